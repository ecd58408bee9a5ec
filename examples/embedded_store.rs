//! Use `imix-core`'s embedded store on its own: open a SQLite store in a directory, create a
//! tenant and a user, and export everything as JSON lines (the backup format).
//!
//! ```sh
//! cargo run -p imix-examples --example embedded-store -- /tmp/imix-demo
//! ```

use futures::TryStreamExt;
use imix_core::{
    model::{Role, Tenant, User},
    store::{sqlite, transfer},
};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "./imix-demo".to_owned());
    let store = sqlite::open(std::path::Path::new(&dir)).await?;
    store.admin.migrate().await?;

    let mut tenant = Tenant::new("Acme Trading");
    tenant.limits.max_messages_per_day = Some(1_000);
    store.tenants.insert(&tenant).await?;
    let agent = User::new(
        format!("agent+{}@acme.example", tenant.id),
        Role::Agent,
        Some(tenant.id),
    );
    store.users.insert(&agent).await?;

    let records: Vec<_> = transfer::export(&store).try_collect().await?;
    for record in &records {
        println!("{}", serde_json::to_string(record)?);
    }
    eprintln!("{} records in {dir}", records.len());
    Ok(())
}
