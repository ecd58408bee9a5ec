//! Roles and permissions: the matrix, written once.
//!
//! `docs/permissions.md` is generated from [`markdown_matrix`] and a test fails when the
//! committed page differs from it.

use std::collections::BTreeSet;

use crate::records::Role;

/// The permissions themselves live in `imix-core` ([`imix_core::access`]) so every
/// capability can check them; this module keeps which role holds which.
pub use imix_core::access::Permission;

use Permission as P;

const READ_ALL: &[Permission] = &[
    P::TenantRead,
    P::UsersRead,
    P::WhatsAppAccountsRead,
    P::TemplatesRead,
    P::ContactsRead,
    P::ConversationsRead,
    P::ConversationsReadAll,
    P::UsageRead,
];

/// The permissions of a tenant user with `role` (for [`Role::Custom`], the explicit list).
pub fn tenant_role_permissions(role: Role, custom: &[Permission]) -> BTreeSet<Permission> {
    let list: Vec<Permission> = match role {
        Role::Admin => P::ALL
            .into_iter()
            .filter(|p| !p.is_platform_only())
            .collect(),
        Role::Manager => vec![
            P::TenantRead,
            P::UsersRead,
            P::WhatsAppAccountsRead,
            P::TemplatesRead,
            P::TemplatesManage,
            P::ContactsRead,
            P::ContactsManage,
            P::ConversationsRead,
            P::ConversationsReadAll,
            P::ConversationsReply,
            P::ConversationsAssign,
            P::InboxManage,
            P::UsageRead,
        ],
        Role::Supervisor => vec![
            P::TenantRead,
            P::UsersRead,
            P::TemplatesRead,
            P::ContactsRead,
            P::ConversationsRead,
            P::ConversationsReadAll,
            P::ConversationsReply,
            P::ConversationsAssign,
            P::InboxManage,
            P::UsageRead,
        ],
        Role::Agent => vec![
            P::TenantRead,
            P::TemplatesRead,
            P::ContactsRead,
            P::ContactsManage,
            P::ConversationsRead,
            P::ConversationsReply,
        ],
        Role::ReadOnly => READ_ALL.to_vec(),
        Role::Billing => vec![P::TenantRead, P::UsageRead],
        Role::Custom => custom
            .iter()
            .copied()
            .filter(|p| !p.is_platform_only())
            .collect(),
    };
    list.into_iter().collect()
}

/// The permissions of a platform user (no tenant): only Admin grants anything.
pub fn platform_role_permissions(role: Role) -> BTreeSet<Permission> {
    match role {
        Role::Admin => P::ALL.into_iter().collect(),
        _ => BTreeSet::new(),
    }
}

/// The permission matrix as a Markdown table (the body of `docs/permissions.md`).
pub fn markdown_matrix() -> String {
    let roles = [
        Role::Admin,
        Role::Manager,
        Role::Supervisor,
        Role::Agent,
        Role::ReadOnly,
        Role::Billing,
    ];
    let mut out = String::from(
        "# Roles and permissions\n\n\
         <!-- Generated from imix-tenancy/src/permission.rs; a test fails when this page is stale.\n     \
         Regenerate: IMIX_UPDATE_DOCS=1 cargo test -p imix-tenancy permissions_doc -->\n\n\
         A user belongs to one tenant or, without a tenant, is a **platform user** (the agency's\n\
         operator; only the Admin role is allowed there, and it holds every permission below).\n\
         Tenant users hold their role's permissions inside their own tenant only. `custom` users\n\
         hold exactly the permissions listed on them (platform permissions cannot be granted).\n\
         A tenant Admin can never create platform users, grant a permission they do not hold, or\n\
         touch another tenant.\n\n",
    );
    out.push_str("| permission | platform admin |");
    for r in roles {
        out.push_str(&format!(" {} |", r.as_str()));
    }
    out.push_str("\n|---|---|");
    for _ in roles {
        out.push_str("---|");
    }
    out.push('\n');
    let platform = platform_role_permissions(Role::Admin);
    for p in Permission::ALL {
        out.push_str(&format!(
            "| `{}` | {} |",
            p.as_str(),
            mark(platform.contains(&p))
        ));
        for r in roles {
            out.push_str(&format!(
                " {} |",
                mark(tenant_role_permissions(r, &[]).contains(&p))
            ));
        }
        out.push('\n');
    }
    out
}

fn mark(yes: bool) -> &'static str {
    if yes {
        "✓"
    } else {
        ""
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_roles_never_hold_platform_permissions() {
        for role in [
            Role::Admin,
            Role::Manager,
            Role::Supervisor,
            Role::Agent,
            Role::ReadOnly,
            Role::Billing,
            Role::Custom,
        ] {
            let perms = tenant_role_permissions(role, &Permission::ALL);
            assert!(perms.iter().all(|p| !p.is_platform_only()), "{role}");
        }
    }

    #[test]
    fn every_role_is_below_tenant_admin() {
        let admin = tenant_role_permissions(Role::Admin, &[]);
        for role in [
            Role::Manager,
            Role::Supervisor,
            Role::Agent,
            Role::ReadOnly,
            Role::Billing,
        ] {
            assert!(
                tenant_role_permissions(role, &[]).is_subset(&admin),
                "{role}"
            );
        }
    }

    #[test]
    fn permissions_doc_matches_the_code() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/permissions.md");
        let generated = markdown_matrix();
        if std::env::var_os("IMIX_UPDATE_DOCS").is_some() {
            std::fs::write(&path, &generated).unwrap();
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == generated,
            "docs/permissions.md is stale: IMIX_UPDATE_DOCS=1 cargo test -p imix-tenancy permissions_doc"
        );
    }
}
