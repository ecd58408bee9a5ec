//! Use the embedded store with one capability on its own: open a SQLite database in a
//! directory, let `imix-tenancy` migrate and open its repositories on it, create a tenant
//! and a user, and export everything as JSON lines (the backup format) through the transfer
//! registry that tenancy registers its records with.
//!
//! ```sh
//! cargo run -p imix-examples --example embedded-store -- /tmp/imix-demo
//! ```

use futures::TryStreamExt;
use imix_core::store::{sqlite, transfer::Transfer};
use imix_tenancy::{storage::TenancyStorage, Role, Tenant, User};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "./imix-demo".to_owned());
    let store = sqlite::open(std::path::Path::new(&dir)).await?;
    store.admin.migrate().await?;
    imix_tenancy::storage::migrate(&store.backend).await?;
    let tenancy = TenancyStorage::open(&store.backend)?;

    let mut tenant = Tenant::new("Acme Trading");
    tenant.limits.max_messages_per_day = Some(1_000);
    tenancy.tenants.insert(&tenant).await?;
    let agent = User::new(
        format!("agent+{}@acme.example", tenant.id),
        Role::Agent,
        Some(tenant.id),
    );
    tenancy.users.insert(&agent).await?;

    let mut transfer = Transfer::new(&store);
    for set in tenancy.record_sets() {
        transfer.register(set);
    }
    let records: Vec<_> = transfer.export().try_collect().await?;
    for record in &records {
        println!("{}", serde_json::to_string(record)?);
    }
    eprintln!("{} records in {dir}", records.len());
    Ok(())
}
