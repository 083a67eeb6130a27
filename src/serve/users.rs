//! Who may connect: a file of users with their SCRAM-SHA-256 salted passwords, one per line,
//! `name:segflow-scram-sha-256$<iterations>$<salt>$<salted password>` (base64), written by
//! `segflow serve passwd`. There is no default user, and the file is read at each login, so
//! a user added or removed counts from the next connection on.
//!
//! pgwire's SCRAM verifies a client's proof from the salted password itself (RFC 5802's
//! `SaltedPassword`), not from PostgreSQL's stored and server keys: whoever reads the file
//! can log in as its users without knowing their passwords, though not learn the passwords.
//! So the file is a secret, and a file that others than its owner may read is refused.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use datafusion_postgres::pgwire::api::auth::sasl::scram::{SCRAM_ITERATIONS, gen_salted_password};
use datafusion_postgres::pgwire::api::auth::{AuthSource, LoginInfo, Password};
use datafusion_postgres::pgwire::error::{PgWireError, PgWireResult};

const SCHEME: &str = "segflow-scram-sha-256";

#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    #[error("could not read the users file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("could not write the users file {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the users file {path} may be read by others than its owner (mode {mode:o}); it lets \
         whoever reads it log in as its users: chmod 600 {path}"
    )]
    Exposed { path: PathBuf, mode: u32 },
    #[error("{path}, line {line}: {problem}")]
    Line {
        path: PathBuf,
        line: usize,
        problem: String,
    },
    #[error("the users file {path} has no users: add one with `segflow serve passwd {path} NAME`")]
    Empty { path: PathBuf },
    #[error("a user name is 1 to 63 letters, digits, '_', '-' or '.'; not '{name}'")]
    BadName { name: String },
    #[error("the password is empty")]
    EmptyPassword,
}

/// One user's line of the file.
#[derive(Clone, PartialEq)]
struct User {
    name: String,
    salt: Vec<u8>,
    salted_password: Vec<u8>,
}

/// The salted password is as good as the password to SCRAM: never in a log or an error.
impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl User {
    fn new(name: &str, password: &str) -> Result<User, UsersError> {
        check_name(name)?;
        if password.is_empty() {
            return Err(UsersError::EmptyPassword);
        }
        let salt: [u8; 16] = rand_0_10::random();
        Ok(User {
            name: name.to_string(),
            salted_password: gen_salted_password(password, &salt, SCRAM_ITERATIONS),
            salt: salt.to_vec(),
        })
    }

    fn line(&self) -> String {
        format!(
            "{}:{SCHEME}${SCRAM_ITERATIONS}${}${}",
            self.name,
            STANDARD.encode(&self.salt),
            STANDARD.encode(&self.salted_password)
        )
    }

    fn parse(text: &str) -> Result<User, String> {
        let (name, secret) = text
            .split_once(':')
            .ok_or("expected `name:segflow-scram-sha-256$...`, as `segflow serve passwd` writes")?;
        check_name(name).map_err(|e| e.to_string())?;
        let parts: Vec<&str> = secret.split('$').collect();
        if parts[0] != SCHEME {
            return Err(format!(
                "user '{name}': '{}' is not {SCHEME}; a PostgreSQL SCRAM verifier cannot be \
                 used here, write the user again with `segflow serve passwd`",
                parts[0]
            ));
        }
        let [_, iterations, salt, salted] = parts[..] else {
            return Err(format!(
                "user '{name}': expected {SCHEME}$<iterations>$<salt>$<salted password>"
            ));
        };
        if iterations != SCRAM_ITERATIONS.to_string() {
            return Err(format!(
                "user '{name}': {iterations} iterations; segflow serve uses {SCRAM_ITERATIONS}"
            ));
        }
        let decode = |what: &str, text: &str| {
            STANDARD
                .decode(text)
                .map_err(|e| format!("user '{name}': the {what} is not base64 ({e})"))
        };
        Ok(User {
            name: name.to_string(),
            salt: decode("salt", salt)?,
            salted_password: decode("salted password", salted)?,
        })
    }
}

fn check_name(name: &str) -> Result<(), UsersError> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
    if name.is_empty() || name.len() > 63 || !name.chars().all(allowed) {
        return Err(UsersError::BadName {
            name: name.to_string(),
        });
    }
    Ok(())
}

/// The users file, read afresh at each login.
#[derive(Debug, Clone)]
pub struct UsersFile {
    path: PathBuf,
}

impl UsersFile {
    /// The file at `path`, checked now: readable only by its owner, every line well formed,
    /// at least one user.
    pub fn open(path: &Path) -> Result<UsersFile, UsersError> {
        let file = UsersFile {
            path: path.to_path_buf(),
        };
        if file.users()?.is_empty() {
            return Err(UsersError::Empty {
                path: file.path.clone(),
            });
        }
        Ok(file)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn users(&self) -> Result<Vec<User>, UsersError> {
        let read = |source| UsersError::Read {
            path: self.path.clone(),
            source,
        };
        let metadata = std::fs::metadata(&self.path).map_err(read)?;
        check_private(&self.path, &metadata)?;
        let text = std::fs::read_to_string(&self.path).map_err(read)?;
        parse_users(&self.path, &text)
    }

    /// Adds `name` with `password`, or gives an existing `name` the new password; the file is
    /// created readable by its owner only, and replaced whole, so a login never reads half.
    pub fn set_password(path: &Path, name: &str, password: &str) -> Result<(), UsersError> {
        let user = User::new(name, password)?;
        let mut users = match std::fs::read_to_string(path) {
            Ok(text) => parse_users(path, &text)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(source) => {
                return Err(UsersError::Read {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        match users.iter_mut().find(|u| u.name == user.name) {
            Some(existing) => *existing = user,
            None => users.push(user),
        }
        let mut text = String::from(
            "# segflow serve's users: name:segflow-scram-sha-256$iterations$salt$salted password.\n\
             # Written by `segflow serve passwd`; keep it readable by its owner only.\n",
        );
        for user in &users {
            text.push_str(&user.line());
            text.push('\n');
        }
        write_private(path, &text).map_err(|source| UsersError::Write {
            path: path.to_path_buf(),
            source,
        })
    }
}

fn parse_users(path: &Path, text: &str) -> Result<Vec<User>, UsersError> {
    let mut users: Vec<User> = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |problem: String| UsersError::Line {
            path: path.to_path_buf(),
            line: index + 1,
            problem,
        };
        let user = User::parse(line).map_err(bad)?;
        if users.iter().any(|u| u.name == user.name) {
            return Err(bad(format!("user '{}' is listed twice", user.name)));
        }
        users.push(user);
    }
    Ok(users)
}

#[cfg(unix)]
fn check_private(path: &Path, metadata: &std::fs::Metadata) -> Result<(), UsersError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(UsersError::Exposed {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_path: &Path, _metadata: &std::fs::Metadata) -> Result<(), UsersError> {
    Ok(())
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    let folder = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut temporary = tempfile::Builder::new()
        .prefix(".segflow-users-")
        .permissions(private_permissions())
        .tempfile_in(folder)?;
    temporary.write_all(text.as_bytes())?;
    temporary.as_file().sync_all()?;
    temporary.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(unix)]
fn private_permissions() -> std::fs::Permissions {
    use std::os::unix::fs::PermissionsExt;
    std::fs::Permissions::from_mode(0o600)
}

#[cfg(not(unix))]
fn private_permissions() -> std::fs::Permissions {
    std::fs::metadata(".")
        .expect("the current folder")
        .permissions()
}

/// pgwire asks for a user's salt and salted password during the SCRAM exchange. An unknown
/// user fails as a wrong password does, so that a client cannot tell which names exist.
#[async_trait]
impl AuthSource for UsersFile {
    async fn get_password(&self, login: &LoginInfo) -> PgWireResult<Password> {
        let name = login.user().unwrap_or_default();
        let users = self.users().map_err(|error| {
            tracing::error!(error = %error, "The users file cannot be read; the login is refused.");
            PgWireError::InvalidPassword(name.to_string())
        })?;
        match users.into_iter().find(|u| u.name == name) {
            Some(user) => Ok(Password::new(Some(user.salt), user.salted_password)),
            None => Err(PgWireError::InvalidPassword(name.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_user_reads_back_and_a_second_password_replaces_the_first() {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("users");
        UsersFile::set_password(&path, "bi_reader", "first").unwrap();
        UsersFile::set_password(&path, "census", "other").unwrap();
        let before = UsersFile::open(&path).unwrap().users().unwrap();
        UsersFile::set_password(&path, "bi_reader", "second").unwrap();
        let after = UsersFile::open(&path).unwrap().users().unwrap();
        assert_eq!(after.len(), 2);
        assert_eq!(after[1], before[1], "the other user is kept as it was");
        assert_eq!(after[0].name, "bi_reader");
        assert_ne!(after[0].salted_password, before[0].salted_password);
        assert_eq!(
            after[0].salted_password,
            gen_salted_password("second", &after[0].salt, SCRAM_ITERATIONS)
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_file_others_may_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("users");
        UsersFile::set_password(&path, "bi_reader", "pw").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let error = UsersFile::open(&path).unwrap_err().to_string();
        assert!(
            error.contains("mode 640") && error.contains("chmod 600"),
            "{error}"
        );
    }

    #[test]
    fn bad_lines_are_named_by_number() {
        let path = Path::new("users");
        let cases = [
            ("bi_reader\n", "expected `name:"),
            (
                "bi_reader:SCRAM-SHA-256$4096:c2FsdA==$a2V5:a2V5\n",
                "a PostgreSQL SCRAM verifier",
            ),
            (
                "bi_reader:segflow-scram-sha-256$1000$c2FsdA==$a2V5\n",
                "1000 iterations",
            ),
            (
                "bi_reader:segflow-scram-sha-256$4096$!!$a2V5\n",
                "the salt is not base64",
            ),
            (
                "a b:segflow-scram-sha-256$4096$c2FsdA==$a2V5\n",
                "not 'a b'",
            ),
        ];
        for (text, expected) in cases {
            let error = parse_users(path, &format!("# users\n{text}"))
                .unwrap_err()
                .to_string();
            assert!(error.starts_with("users, line 2: "), "{error}");
            assert!(error.contains(expected), "{text}: {error}");
        }
        let twice = "a:segflow-scram-sha-256$4096$c2FsdA==$a2V5\n".repeat(2);
        let error = parse_users(path, &twice).unwrap_err().to_string();
        assert!(
            error.contains("line 2: user 'a' is listed twice"),
            "{error}"
        );
    }
}
