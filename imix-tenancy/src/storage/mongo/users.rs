//! Users on MongoDB.

#[allow(clippy::wildcard_imports)]
use super::*;

#[async_trait]
impl UserRepository for MongoTenancy {
    async fn insert(&self, user: &User) -> Result<()> {
        let mut doc = to_doc(user, &user.id.to_string(), "user")?;
        doc.insert("email_lower", user.normalized_email());
        self.users()
            .insert_one(doc)
            .await
            .map_err(unique_err("user", "insert a user"))?;
        Ok(())
    }

    async fn get(&self, scope: Scope, id: UserId) -> Result<User> {
        let mut filter = doc! { "_id": id.to_string() };
        scope_filter(&mut filter, scope);
        let found = self
            .users()
            .find_one(filter)
            .await
            .map_err(backend_err("read a user"))?;
        match found {
            Some(d) => from_doc(d, "user"),
            None => Err(Error::NotFound {
                entity: "user",
                id: id.to_string(),
            }),
        }
    }

    async fn find_by_email(&self, email: &str) -> Result<Option<User>> {
        self.users()
            .find_one(doc! { "email_lower": normalize_email(email) })
            .await
            .map_err(backend_err("find a user by email"))?
            .map(|d| from_doc(d, "user"))
            .transpose()
    }

    async fn update(&self, scope: Scope, user: &User) -> Result<User> {
        check_owner_stays_in_scope(scope, user.tenant_id)?;
        let mut next = user.clone();
        next.version += 1;
        let id = user.id.to_string();
        let mut replacement = to_doc(&next, &id, "user")?;
        replacement.insert("email_lower", user.normalized_email());
        self.replace_scoped(
            self.users(),
            scope,
            id,
            user.version,
            replacement,
            "user",
            "update a user",
        )
        .await?;
        Ok(next)
    }

    async fn list(&self, scope: Scope, page: PageRequest) -> Result<Page<User>> {
        let mut filter = Document::new();
        scope_filter(&mut filter, scope);
        self.list_docs(self.users(), filter, page, "user", |u: &User| {
            u.id.to_string()
        })
        .await
    }
}
