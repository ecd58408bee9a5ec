//! Tenants on SQLite.

#[allow(clippy::wildcard_imports)]
use super::*;

#[async_trait]
impl TenantRepository for SqliteTenancy {
    async fn insert(&self, tenant: &Tenant) -> Result<()> {
        let doc = to_json(tenant, "tenant")?;
        let (id, version) = (tenant.id.to_string(), version_param(tenant.version)?);
        self.write("insert a tenant", move |c| {
            exec(
                c,
                "INSERT INTO tenants (id, version, doc) VALUES (?1, ?2, ?3)",
                params![id, version, doc],
            )
            .map_err(unique_err(UNIQUE, "tenant", "insert a tenant"))?;
            Ok(())
        })
        .await
    }

    async fn get(&self, id: TenantId) -> Result<Tenant> {
        self.read("read a tenant", move |c| {
            let doc: Option<String> = c
                .query_row(
                    "SELECT doc FROM tenants WHERE id = ?1",
                    [id.to_string()],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db_err("read a tenant"))?;
            match doc {
                Some(doc) => from_json(&doc, "tenant"),
                None => Err(Error::NotFound {
                    entity: "tenant",
                    id: id.to_string(),
                }),
            }
        })
        .await
    }

    async fn update(&self, tenant: &Tenant) -> Result<Tenant> {
        let mut next = tenant.clone();
        next.version += 1;
        let doc = to_json(&next, "tenant")?;
        let (expected, new_version) =
            (version_param(tenant.version)?, version_param(next.version)?);
        let id = tenant.id.to_string();
        self.write("update a tenant", move |c| {
            let changed = c
                .execute(
                    "UPDATE tenants SET version = ?1, doc = ?2 WHERE id = ?3 AND version = ?4",
                    params![new_version, doc, id, expected],
                )
                .map_err(db_err("update a tenant"))?;
            if changed == 1 {
                return Ok(next);
            }
            let exists: bool = c
                .query_row(
                    "SELECT EXISTS(SELECT 1 FROM tenants WHERE id = ?1)",
                    [&id],
                    |r| r.get(0),
                )
                .map_err(db_err("update a tenant"))?;
            Err(if exists {
                Error::VersionConflict {
                    entity: "tenant",
                    id,
                    expected: expected as u64,
                }
            } else {
                Error::NotFound {
                    entity: "tenant",
                    id,
                }
            })
        })
        .await
    }

    async fn list(&self, scope: Scope, page: PageRequest) -> Result<Page<Tenant>> {
        let limit = page.effective_limit()?;
        let cursor = page.validated_cursor()?;
        let only = scope_param(scope);
        self.read("list tenants", move |c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT doc FROM tenants
                     WHERE (?1 IS NULL OR id > ?1) AND (?2 IS NULL OR id = ?2)
                     ORDER BY id LIMIT ?3",
                )
                .map_err(db_err("list tenants"))?;
            let rows = stmt
                .query_map(params![cursor, only, limit + 1], |r| r.get::<_, String>(0))
                .map_err(db_err("list tenants"))?;
            let mut items = Vec::new();
            for row in rows {
                items.push(from_json::<Tenant>(
                    &row.map_err(db_err("list tenants"))?,
                    "tenant",
                )?);
            }
            Ok(Page::from_overfetch(items, limit, |t| t.id.to_string()))
        })
        .await
    }
}
