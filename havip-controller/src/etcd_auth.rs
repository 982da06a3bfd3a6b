//! etcd's users and roles for havip (`havip-controller etcd-auth`), with
//! etcd run with `--client-cert-auth`, so each client's certificate common
//! name is its user:
//!
//! - `root` (role `root`): etcd's administrator, needed to enable auth;
//!   only the operator holds its certificate.
//! - the controller's user (`controller` by default), role
//!   [`CONTROLLER_ROLE`]: read and write the whole root `/havip/v1/`.
//! - one user per host, named as the host, role `havip-host-<host>`: read
//!   the root (its ports, the VIPs and subnets they need, the other hosts'
//!   ports and owner reports), write only `reports/<host>/` (its acks and
//!   owner reports).
//!
//! Every step is idempotent: what exists is left as it is.

use etcd_client::{Client, Permission, UserAddOptions};
use havip_schema::keys;

/// The controller's role.
pub const CONTROLLER_ROLE: &str = "havip-controller";
const ROOT: &str = "root";

/// The role of host `host`.
pub fn host_role(host: &str) -> String {
    format!("havip-host-{host}")
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("etcd: {0}")]
    Etcd(#[from] etcd_client::Error),
    #[error("{0}")]
    Invalid(String),
}

async fn ensure_user(client: &mut Client, name: &str, role: &str) -> Result<(), AuthError> {
    let users = client.user_list().await?;
    if !users.users().iter().any(|u| u == name) {
        client
            .user_add(name, "", Some(UserAddOptions::new().with_no_pwd()))
            .await?;
    }
    let roles = client.user_get(name).await?;
    if !roles.roles().iter().any(|r| r == role) {
        client.user_grant_role(name, role).await?;
    }
    Ok(())
}

async fn ensure_role(
    client: &mut Client,
    role: &str,
    perms: Vec<Permission>,
) -> Result<(), AuthError> {
    let roles = client.role_list().await?;
    if !roles.roles().iter().any(|r| r == role) {
        client.role_add(role).await?;
    }
    for perm in perms {
        client.role_grant_permission(role, perm).await?;
    }
    Ok(())
}

/// Creates `root`, the controller's role and user `controller_user`, and
/// enables auth. Run with root's certificate once auth is on.
pub async fn init(client: &mut Client, controller_user: &str) -> Result<(), AuthError> {
    check_user(controller_user)?;
    let root = keys::root();
    ensure_role(
        client,
        CONTROLLER_ROLE,
        vec![Permission::read_write(root).with_prefix()],
    )
    .await?;
    ensure_user(client, controller_user, CONTROLLER_ROLE).await?;
    ensure_user(client, ROOT, ROOT).await?;
    client.auth_enable().await?;
    Ok(())
}

/// Creates host `host`'s role and user (the host's certificate must have
/// the host's name as its common name).
pub async fn add_host(client: &mut Client, host: &str) -> Result<(), AuthError> {
    havip_schema::rules::check_id("host", host).map_err(|e| AuthError::Invalid(e.0))?;
    check_user(host)?;
    let role = host_role(host);
    ensure_role(
        client,
        &role,
        vec![
            Permission::read(keys::root()).with_prefix(),
            Permission::read_write(keys::reports(host)).with_prefix(),
        ],
    )
    .await?;
    ensure_user(client, host, &role).await
}

fn check_user(name: &str) -> Result<(), AuthError> {
    if name == ROOT {
        return Err(AuthError::Invalid(
            "`root` is etcd's administrator, not a havip user".into(),
        ));
    }
    Ok(())
}
