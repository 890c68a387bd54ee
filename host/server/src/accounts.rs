//! Users, their roles per workspace, and API tokens.
//!
//! - A **token** is `alm_` followed by 256 random bits (base64url). Only its
//!   SHA-256 is stored (tree `tokens`, key = the hash), so a copy of the
//!   database yields no usable token. Tokens have an optional expiry and can
//!   be revoked; both are checked on every request.
//! - A **user** has a role in each workspace it belongs to (tree `users`,
//!   key = the user name); a token acts as its user. System administrators
//!   (the first user) may also create workspaces and users; they see a
//!   workspace's data only through a role in it, like anyone else.
//! - **Roles**, from most to least: `admin` (everything in the workspace:
//!   secrets, users' roles, audit), `editor` (playbooks, packages and
//!   schedules, plus what a responder does), `responder` (start, cancel and
//!   decide runs), `viewer` (read only). [`Role::allows`] is the one place
//!   this is decided; the route × role matrix test holds every route to it.

use std::collections::BTreeMap;

pub(crate) use allama_engine::driver::now_ms;
use allama_store::names::{NameError, check_workspace};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A role in one workspace.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Read only.
    Viewer,
    /// Runs: start, cancel, approve and reject.
    Responder,
    /// Playbooks, packages, schedules, and what a responder does.
    Editor,
    /// Everything in the workspace: secrets, members, audit.
    Admin,
}

/// What a request needs to be allowed to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Permission {
    /// Read playbooks, runs, schedules, packages.
    Read,
    /// Start and cancel runs, decide approvals.
    Respond,
    /// Change playbooks, packages, grants, schedules.
    Edit,
    /// Secrets, members and tokens of the workspace, the audit log.
    Administer,
}

impl Role {
    /// Whether this role may do `p`.
    pub fn allows(self, p: Permission) -> bool {
        let needed = match p {
            Permission::Read => Role::Viewer,
            Permission::Respond => Role::Responder,
            Permission::Edit => Role::Editor,
            Permission::Administer => Role::Admin,
        };
        self >= needed
    }

    /// The role's name, as in approvals' `roles`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Responder => "responder",
            Role::Editor => "editor",
            Role::Admin => "admin",
        }
    }
}

/// A user.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct User {
    /// The name (`[a-z0-9][a-z0-9._-]{0,62}`).
    pub name: String,
    /// Role by workspace.
    pub roles: BTreeMap<String, Role>,
    /// May create workspaces and users.
    #[serde(default)]
    pub system_admin: bool,
    /// Milliseconds since the epoch.
    pub created_at: u64,
}

/// A token as stored (never the token itself).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TokenInfo {
    /// A public id, to list and revoke it by.
    pub id: String,
    /// The user it acts as.
    pub user: String,
    /// What it is for.
    pub label: String,
    /// Milliseconds since the epoch.
    pub created_at: u64,
    /// When it stops working, if ever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
    /// Revoked tokens are kept (for the audit trail) and refused.
    #[serde(default)]
    pub revoked: bool,
}

/// Why an account operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// A bad workspace name.
    #[error(transparent)]
    Workspace(#[from] NameError),
    /// A name no workspace may take.
    #[error("`{0}` is reserved; choose another workspace name")]
    Reserved(String),
    /// The workspace exists already.
    #[error("workspace `{0}` exists already")]
    WorkspaceExists(String),
    /// No such workspace.
    #[error("no workspace `{0}`")]
    NoWorkspace(String),
    /// A bad user name.
    #[error(
        "`{0}` is not a valid user name: use 1 to 63 lowercase letters, digits, `.`, `_` and `-`, starting with a letter or digit"
    )]
    UserName(String),
    /// No such user.
    #[error("no user `{0}`")]
    NoUser(String),
    /// The user exists already.
    #[error("user `{0}` exists already")]
    UserExists(String),
    /// No such token.
    #[error("no token `{0}`")]
    NoToken(String),
    /// sled failed.
    #[error("account store: {0}")]
    Store(String),
}

impl From<sled::Error> for AccountError {
    fn from(e: sled::Error) -> Self {
        AccountError::Store(e.to_string())
    }
}

/// Why a presented token was refused (all answer 401; the reason is audited).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Not a token this server issued.
    Unknown,
    /// Revoked.
    Revoked,
    /// Past its expiry.
    Expired,
    /// Its user is gone.
    NoUser,
}

impl Refusal {
    /// For the audit record.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Unknown => "unknown token",
            Refusal::Revoked => "revoked token",
            Refusal::Expired => "expired token",
            Refusal::NoUser => "the token's user no longer exists",
        }
    }
}

/// A workspace.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Workspace {
    /// Its name.
    pub name: String,
    /// Milliseconds since the epoch.
    pub created_at: u64,
    /// Who created it.
    pub created_by: String,
}

/// Users, tokens and workspaces.
pub struct Accounts {
    users: allama_store::gate::Tree,
    tokens: allama_store::gate::Tree,
    workspaces: allama_store::gate::Tree,
}

/// Checks a user name.
pub fn check_user_name(name: &str) -> Result<(), AccountError> {
    let b = name.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 63
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"._-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(AccountError::UserName(
            name.chars().take(40).flat_map(char::escape_debug).collect(),
        ))
    }
}

fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn decode<T: for<'de> Deserialize<'de>>(v: &[u8]) -> Result<T, AccountError> {
    serde_json::from_slice(v).map_err(|e| AccountError::Store(format!("a damaged record: {e}")))
}

fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, AccountError> {
    serde_json::to_vec(v).map_err(|e| AccountError::Store(e.to_string()))
}

impl Accounts {
    /// The accounts in `db`.
    pub fn open(db: &allama_store::gate::Db) -> Result<Self, AccountError> {
        Ok(Self {
            users: db.open_tree("users")?,
            tokens: db.open_tree("tokens")?,
            workspaces: db.open_tree("workspaces")?,
        })
    }

    /// Creates a workspace.
    pub fn create_workspace(&self, name: &str, by: &str) -> Result<Workspace, AccountError> {
        check_workspace(name)?;
        if name == crate::app::SYSTEM_CHAIN {
            return Err(AccountError::Reserved(name.to_string()));
        }
        let ws = Workspace {
            name: name.to_string(),
            created_at: now_ms(),
            created_by: by.to_string(),
        };
        match self
            .workspaces
            .compare_and_swap(name, None as Option<&[u8]>, Some(encode(&ws)?))?
        {
            Ok(()) => Ok(ws),
            Err(_) => Err(AccountError::WorkspaceExists(name.to_string())),
        }
    }

    /// A workspace.
    pub fn workspace(&self, name: &str) -> Result<Option<Workspace>, AccountError> {
        self.workspaces.get(name)?.map(|v| decode(&v)).transpose()
    }

    /// Every workspace, by name.
    pub fn workspaces(&self) -> Result<Vec<Workspace>, AccountError> {
        self.workspaces
            .iter()
            .map(|r| {
                let (_, v) = r?;
                decode(&v)
            })
            .collect()
    }

    /// Whether any user exists (a fresh server has none).
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Creates a user.
    pub fn create_user(
        &self,
        name: &str,
        roles: BTreeMap<String, Role>,
        system_admin: bool,
    ) -> Result<User, AccountError> {
        check_user_name(name)?;
        for ws in roles.keys() {
            check_workspace(ws)?;
        }
        let user = User {
            name: name.to_string(),
            roles,
            system_admin,
            created_at: now_ms(),
        };
        match self
            .users
            .compare_and_swap(name, None as Option<&[u8]>, Some(encode(&user)?))?
        {
            Ok(()) => Ok(user),
            Err(_) => Err(AccountError::UserExists(name.to_string())),
        }
    }

    /// A user.
    pub fn user(&self, name: &str) -> Result<Option<User>, AccountError> {
        self.users.get(name)?.map(|v| decode(&v)).transpose()
    }

    /// Every user.
    pub fn users(&self) -> Result<Vec<User>, AccountError> {
        self.users
            .iter()
            .map(|r| r.map_err(AccountError::from).and_then(|(_, v)| decode(&v)))
            .collect()
    }

    /// Gives `user` `role` in `workspace` (`None` removes it from the workspace).
    pub fn set_role(
        &self,
        user: &str,
        workspace: &str,
        role: Option<Role>,
    ) -> Result<User, AccountError> {
        check_workspace(workspace)?;
        if self.workspace(workspace)?.is_none() {
            return Err(AccountError::NoWorkspace(workspace.to_string()));
        }
        let updated = self.users.update_and_fetch(user, |old| {
            let old = old?;
            // A record that does not parse is kept as it is (and reported
            // below), never replaced by nothing.
            let Ok(mut u) = serde_json::from_slice::<User>(old) else {
                return Some(old.to_vec());
            };
            match role {
                Some(r) => u.roles.insert(workspace.to_string(), r),
                None => u.roles.remove(workspace),
            };
            Some(serde_json::to_vec(&u).unwrap_or_else(|_| old.to_vec()))
        })?;
        match updated {
            Some(v) => decode(&v),
            None => Err(AccountError::NoUser(user.to_string())),
        }
    }

    /// Issues a token for `user`; the token is returned once and never stored.
    pub fn issue_token(
        &self,
        user: &str,
        label: &str,
        expires_at: Option<u64>,
    ) -> Result<(String, TokenInfo), AccountError> {
        if self.user(user)?.is_none() {
            return Err(AccountError::NoUser(user.to_string()));
        }
        let mut secret = [0u8; 32];
        SystemRandom::new()
            .fill(&mut secret)
            .map_err(|_| AccountError::Store("the system random source failed".into()))?;
        let token = format!("alm_{}", B64URL.encode(secret));
        let hash = token_hash(&token);
        let info = TokenInfo {
            id: hex::encode(&hash[..8]),
            user: user.to_string(),
            label: label.chars().take(200).collect(),
            created_at: now_ms(),
            expires_at,
            revoked: false,
        };
        self.tokens.insert(hash, encode(&info)?)?;
        Ok((token, info))
    }

    /// The user a token acts as, or why it is refused.
    pub fn authenticate(
        &self,
        token: &str,
    ) -> Result<Result<(User, TokenInfo), Refusal>, AccountError> {
        // A malformed token is as unknown as a wrong one; checking the
        // shape first spares a hash of an oversized header.
        if !token.starts_with("alm_") || token.len() != 47 {
            return Ok(Err(Refusal::Unknown));
        }
        let Some(v) = self.tokens.get(token_hash(token))? else {
            return Ok(Err(Refusal::Unknown));
        };
        let info: TokenInfo = decode(&v)?;
        if info.revoked {
            return Ok(Err(Refusal::Revoked));
        }
        if info.expires_at.is_some_and(|t| t <= now_ms()) {
            return Ok(Err(Refusal::Expired));
        }
        match self.user(&info.user)? {
            Some(u) => Ok(Ok((u, info))),
            None => Ok(Err(Refusal::NoUser)),
        }
    }

    /// Tokens of a user (or every token, for `None`).
    pub fn tokens(&self, user: Option<&str>) -> Result<Vec<TokenInfo>, AccountError> {
        let mut out = Vec::new();
        for r in self.tokens.iter() {
            let (_, v) = r?;
            let t: TokenInfo = decode(&v)?;
            if user.is_none_or(|u| t.user == u) {
                out.push(t);
            }
        }
        out.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    /// Revokes a token by its id; returns it.
    pub fn revoke(&self, id: &str) -> Result<TokenInfo, AccountError> {
        for r in self.tokens.iter() {
            let (k, v) = r?;
            let mut t: TokenInfo = decode(&v)?;
            if t.id == id {
                t.revoked = true;
                self.tokens.insert(k, encode(&t)?)?;
                return Ok(t);
            }
        }
        Err(AccountError::NoToken(id.chars().take(40).collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accounts() -> (tempfile::TempDir, Accounts) {
        let d = tempfile::tempdir().unwrap();
        let db = allama_store::gate::Db::from(sled::open(d.path().join("db")).unwrap());
        (d, Accounts::open(&db).unwrap())
    }

    #[test]
    fn roles_are_ordered_by_what_they_allow() {
        use Permission::*;
        let table = [
            (Role::Viewer, [true, false, false, false]),
            (Role::Responder, [true, true, false, false]),
            (Role::Editor, [true, true, true, false]),
            (Role::Admin, [true, true, true, true]),
        ];
        for (role, expect) in table {
            let got = [Read, Respond, Edit, Administer].map(|p| role.allows(p));
            assert_eq!(got, expect, "{role:?}");
        }
    }

    #[test]
    fn tokens_authenticate_until_revoked_or_expired() {
        let (_d, a) = accounts();
        a.create_user(
            "alice",
            BTreeMap::from([("soc".into(), Role::Responder)]),
            false,
        )
        .unwrap();
        let (token, info) = a.issue_token("alice", "laptop", None).unwrap();
        assert!(token.starts_with("alm_") && token.len() == 47, "{token}");
        let (u, t) = a.authenticate(&token).unwrap().unwrap();
        assert_eq!(
            (u.name.as_str(), t.id.as_str()),
            ("alice", info.id.as_str())
        );
        // Only the hash is stored.
        let stored = a.tokens.iter().next().unwrap().unwrap();
        assert!(!String::from_utf8_lossy(&stored.1).contains(&token[4..]));
        assert!(a.revoke(&info.id).unwrap().revoked);
        assert_eq!(
            a.authenticate(&token).unwrap().unwrap_err(),
            Refusal::Revoked
        );
        let (old, _) = a.issue_token("alice", "old", Some(now_ms() - 1)).unwrap();
        assert_eq!(a.authenticate(&old).unwrap().unwrap_err(), Refusal::Expired);
        let (late, _) = a
            .issue_token("alice", "later", Some(now_ms() + 3_600_000))
            .unwrap();
        assert!(a.authenticate(&late).unwrap().is_ok());
    }

    #[test]
    fn hostile_tokens_and_names_are_refused() {
        let (_d, a) = accounts();
        for bad in [
            "",
            "alm_",
            "Bearer x",
            &"a".repeat(100_000),
            "alm_\u{0}\u{0}",
            "alm_ünï",
        ] {
            assert_eq!(
                a.authenticate(bad).unwrap().unwrap_err(),
                Refusal::Unknown,
                "{bad:?}"
            );
        }
        let forged = format!("alm_{}", B64URL.encode([0u8; 32]));
        assert_eq!(
            a.authenticate(&forged).unwrap().unwrap_err(),
            Refusal::Unknown
        );
        for bad in ["", "Alice", "a b", "../x", "a\u{0}", &"a".repeat(64)] {
            assert!(matches!(
                a.create_user(bad, BTreeMap::new(), false),
                Err(AccountError::UserName(_))
            ));
        }
        assert!(matches!(
            a.create_user("bob", BTreeMap::from([("../x".into(), Role::Admin)]), false),
            Err(AccountError::Workspace(_))
        ));
        a.create_user("bob", BTreeMap::new(), false).unwrap();
        assert!(matches!(
            a.create_user("bob", BTreeMap::new(), false),
            Err(AccountError::UserExists(_))
        ));
        assert!(matches!(
            a.issue_token("nobody", "x", None),
            Err(AccountError::NoUser(_))
        ));
        assert!(matches!(a.revoke("ffff"), Err(AccountError::NoToken(_))));
    }

    #[test]
    fn roles_change_per_workspace() {
        let (_d, a) = accounts();
        a.create_user("carol", BTreeMap::new(), false).unwrap();
        assert!(matches!(
            a.set_role("carol", "soc", Some(Role::Editor)),
            Err(AccountError::NoWorkspace(_))
        ));
        a.create_workspace("soc", "user:root").unwrap();
        assert!(matches!(
            a.create_workspace("soc", "user:root"),
            Err(AccountError::WorkspaceExists(_))
        ));
        assert!(matches!(
            a.create_workspace("system", "user:root"),
            Err(AccountError::Reserved(_))
        ));
        let u = a.set_role("carol", "soc", Some(Role::Editor)).unwrap();
        assert_eq!(u.roles.get("soc"), Some(&Role::Editor));
        let u = a.set_role("carol", "soc", None).unwrap();
        assert!(u.roles.is_empty());
        assert!(matches!(
            a.set_role("nobody", "soc", Some(Role::Admin)),
            Err(AccountError::NoUser(_))
        ));
    }
}
