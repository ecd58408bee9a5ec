//! Users on SQLite.

#[allow(clippy::wildcard_imports)]
use super::*;

#[async_trait]
impl UserRepository for SqliteTenancy {
    async fn insert(&self, user: &User) -> Result<()> {
        let doc = to_json(user, "user")?;
        let id = user.id.to_string();
        let tenant = user.tenant_id.map(|t| t.to_string());
        let email = user.normalized_email();
        let version = version_param(user.version)?;
        self.write("insert a user", move |c| {
            exec(
                c,
                "INSERT INTO users (id, tenant_id, email_lower, version, doc)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![id, tenant, email, version, doc],
            )
            .map_err(unique_err(UNIQUE, "user", "insert a user"))?;
            Ok(())
        })
        .await
    }

    async fn get(&self, scope: Scope, id: UserId) -> Result<User> {
        let only = scope_param(scope);
        self.read("read a user", move |c| {
            let doc: Option<String> = c
                .query_row(
                    "SELECT doc FROM users WHERE id = ?1 AND (?2 IS NULL OR tenant_id = ?2)",
                    params![id.to_string(), only],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db_err("read a user"))?;
            match doc {
                Some(doc) => from_json(&doc, "user"),
                None => Err(Error::NotFound {
                    entity: "user",
                    id: id.to_string(),
                }),
            }
        })
        .await
    }

    async fn find_by_email(&self, email: &str) -> Result<Option<User>> {
        let email = normalize_email(email);
        self.read("find a user by email", move |c| {
            let doc: Option<String> = c
                .query_row(
                    "SELECT doc FROM users WHERE email_lower = ?1",
                    [email],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db_err("find a user by email"))?;
            doc.map(|d| from_json(&d, "user")).transpose()
        })
        .await
    }

    async fn update(&self, scope: Scope, user: &User) -> Result<User> {
        imix_core::store::check_owner_stays_in_scope(scope, user.tenant_id)?;
        let mut next = user.clone();
        next.version += 1;
        let doc = to_json(&next, "user")?;
        let id = user.id.to_string();
        let tenant = user.tenant_id.map(|t| t.to_string());
        let email = user.normalized_email();
        let (expected, new_version) = (version_param(user.version)?, version_param(next.version)?);
        let only = scope_param(scope);
        self.write("update a user", move |c| {
            let changed = c
                .execute(
                    "UPDATE users SET version = ?1, doc = ?2, tenant_id = ?3, email_lower = ?4
                     WHERE id = ?5 AND version = ?6 AND (?7 IS NULL OR tenant_id = ?7)",
                    params![new_version, doc, tenant, email, id, expected, only],
                )
                .map_err(unique_err(UNIQUE, "user", "update a user"))?;
            if changed == 1 {
                return Ok(next);
            }
            Err(missing_or_stale(c, "users", "user", id, only, expected))
        })
        .await
    }

    async fn list(&self, scope: Scope, page: PageRequest) -> Result<Page<User>> {
        let limit = page.effective_limit()?;
        let cursor = page.validated_cursor()?;
        let only = scope_param(scope);
        self.read("list users", move |c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT doc FROM users
                     WHERE (?1 IS NULL OR id > ?1) AND (?2 IS NULL OR tenant_id = ?2)
                     ORDER BY id LIMIT ?3",
                )
                .map_err(db_err("list users"))?;
            let rows = stmt
                .query_map(params![cursor, only, limit + 1], |r| r.get::<_, String>(0))
                .map_err(db_err("list users"))?;
            let mut items = Vec::new();
            for row in rows {
                items.push(from_json::<User>(
                    &row.map_err(db_err("list users"))?,
                    "user",
                )?);
            }
            Ok(Page::from_overfetch(items, limit, |u| u.id.to_string()))
        })
        .await
    }
}
