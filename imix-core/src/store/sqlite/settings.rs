//! Settings documents on SQLite.

#[allow(clippy::wildcard_imports)]
use super::*;

#[async_trait]
impl SettingsRepository for SqliteStore {
    async fn get(&self, scope: SettingsScope, key: &str) -> Result<Option<SettingsDoc>> {
        let key = key.to_owned();
        self.read("read settings", move |c| {
            let doc: Option<String> = c
                .query_row(
                    "SELECT doc FROM settings WHERE scope = ?1 AND key = ?2",
                    params![scope.to_string(), key],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db_err("read settings"))?;
            doc.map(|d| from_json(&d, "settings")).transpose()
        })
        .await
    }

    async fn insert(&self, doc: &SettingsDoc) -> Result<()> {
        let json = to_json(doc, "settings")?;
        let (scope, key, version) = (
            doc.scope.to_string(),
            doc.key.clone(),
            version_param(doc.version)?,
        );
        self.write("insert settings", move |c| {
            exec(
                c,
                "INSERT INTO settings (scope, key, version, doc) VALUES (?1, ?2, ?3, ?4)",
                params![scope, key, version, json],
            )
            .map_err(unique_err(CORE_UNIQUE, "settings", "insert settings"))?;
            Ok(())
        })
        .await
    }

    async fn update(&self, doc: &SettingsDoc) -> Result<SettingsDoc> {
        let mut next = doc.clone();
        next.version += 1;
        let json = to_json(&next, "settings")?;
        let (scope, key) = (doc.scope.to_string(), doc.key.clone());
        let (expected, new_version) = (version_param(doc.version)?, version_param(next.version)?);
        self.write("update settings", move |c| {
            let changed = c
                .execute(
                    "UPDATE settings SET version = ?1, doc = ?2
                     WHERE scope = ?3 AND key = ?4 AND version = ?5",
                    params![new_version, json, scope, key, expected],
                )
                .map_err(db_err("update settings"))?;
            if changed == 1 {
                return Ok(next);
            }
            let exists: bool = c
                .query_row(
                    "SELECT EXISTS(SELECT 1 FROM settings WHERE scope = ?1 AND key = ?2)",
                    params![scope, key],
                    |r| r.get(0),
                )
                .map_err(db_err("update settings"))?;
            let id = format!("{scope}/{key}");
            Err(if exists {
                Error::VersionConflict {
                    entity: "settings",
                    id,
                    expected: expected as u64,
                }
            } else {
                Error::NotFound {
                    entity: "settings",
                    id,
                }
            })
        })
        .await
    }

    async fn list_all(&self) -> Result<Vec<SettingsDoc>> {
        self.read("list settings", move |c| {
            let mut stmt = c
                .prepare_cached("SELECT doc FROM settings ORDER BY scope, key")
                .map_err(db_err("list settings"))?;
            let rows = stmt
                .query_map([], |r| r.get::<_, String>(0))
                .map_err(db_err("list settings"))?;
            let mut docs = Vec::new();
            for row in rows {
                docs.push(from_json(
                    &row.map_err(db_err("list settings"))?,
                    "settings",
                )?);
            }
            Ok(docs)
        })
        .await
    }
}
