//! `renkei install-service`: writes the systemd unit that runs an office node as a dedicated
//! user with systemd's sandboxing (the unit is `examples/systemd/renkei.service`, embedded in
//! the binary), with the user, the home folder and the binary filled in.
//!
//! It writes the unit file and nothing else: creating the user, enabling and starting the
//! service need root and are the administrator's to run — the command prints them, in Japanese
//! and English. It never replaces a different unit file there unless told to (`--force`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

/// The unit as shipped in `examples/systemd/renkei.service`.
pub const UNIT_TEMPLATE: &str = include_str!("../../examples/systemd/renkei.service");

/// The unit file's name.
pub const UNIT_NAME: &str = "renkei.service";

/// What the template says where the installed unit says the office's own values.
const TEMPLATE_USER: &str = "renkei";
const TEMPLATE_HOME: &str = "/srv/renkei";
const TEMPLATE_BINARY: &str = "/usr/local/bin/renkei";

/// Where and for whom the unit is installed.
#[derive(Debug, Clone)]
pub struct ServiceSetup {
    /// The folder the unit is written to (`/etc/systemd/system`).
    pub unit_dir: PathBuf,
    /// The system user the node runs as (and its group, of the same name).
    pub user: String,
    /// The office's home folder: the only one the node may write.
    pub home: PathBuf,
    /// The `renkei` binary the service runs.
    pub binary: PathBuf,
    /// Replace a different unit file already there.
    pub force: bool,
}

/// Why the unit was not written.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// Not a user name `useradd` takes for a system user.
    #[error(
        "利用者名 {0:?} は使えません。英小文字・数字・_・- で32文字までにしてください（例: renkei） / the user name {0:?} cannot be used: use lower-case letters, digits, _ and -, at most 32 (e.g. renkei)"
    )]
    BadUser(String),
    /// A path systemd would read otherwise than meant.
    #[error(
        "{what} {path} は使えません。空白や % \" ' \\ を含まない絶対パスにしてください（例: /srv/renkei） / the {what_en} {path} cannot be used: give an absolute path without spaces or % \" ' \\ (e.g. /srv/renkei)"
    )]
    BadPath {
        /// Which path, in Japanese.
        what: &'static str,
        /// Which path, in English.
        what_en: &'static str,
        /// The path as given.
        path: String,
    },
    /// A different unit file is there.
    #[error(
        "{0} には別の内容のユニットファイルがあります。置き換えてよければ --force を付けてもう一度実行してください / {0} already holds a different unit file: run again with --force to replace it"
    )]
    Different(String),
    /// Writing failed.
    #[error(
        "ユニットファイル {path} を書き込めません。root で実行するか（sudo）、--unit-dir で書き込める場所を指定してください / cannot write the unit file {path}: run as root (sudo), or give a folder you can write with --unit-dir ({cause:#})"
    )]
    Write {
        /// The unit file.
        path: String,
        /// What failed.
        cause: anyhow::Error,
    },
}

/// What [`install`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Installed {
    /// The unit file was written (created or replaced).
    Written(PathBuf),
    /// The same unit file was there already.
    Unchanged(PathBuf),
}

fn user_ok(user: &str) -> bool {
    let mut chars = user.chars();
    user.len() <= 32
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// A path systemd reads as written: absolute, printable, without white space, `%`
/// (specifiers), quotes or backslashes (escapes).
fn path_ok(p: &Path) -> bool {
    p.is_absolute()
        && p.to_str().is_some_and(|s| {
            !s.chars()
                .any(|c| c.is_whitespace() || c.is_control() || "%\"'\\".contains(c))
        })
}

/// The unit for `setup`: the template with the user (and group), home and binary filled in.
pub fn render(setup: &ServiceSetup) -> Result<String, ServiceError> {
    if !user_ok(&setup.user) {
        return Err(ServiceError::BadUser(setup.user.clone()));
    }
    for (p, what, what_en) in [
        (&setup.home, "ホームフォルダ", "home folder"),
        (&setup.binary, "renkei の実行ファイル", "renkei binary"),
    ] {
        if !path_ok(p) {
            return Err(ServiceError::BadPath {
                what,
                what_en,
                path: p.display().to_string(),
            });
        }
    }
    let home = setup.home.to_string_lossy();
    let binary = setup.binary.to_string_lossy();
    let mut out = String::with_capacity(UNIT_TEMPLATE.len() + 64);
    for line in UNIT_TEMPLATE.lines() {
        let line = if line.starts_with("User=") {
            format!("User={}", setup.user)
        } else if line.starts_with("Group=") {
            format!("Group={}", setup.user)
        } else {
            // The binary first: the home's template path is a prefix of neither, but keep
            // the order safe should they ever overlap.
            line.replace(TEMPLATE_BINARY, &binary)
                .replace(TEMPLATE_HOME, &home)
                .replace(
                    &format!("--shell /usr/sbin/nologin {TEMPLATE_USER}"),
                    &format!("--shell /usr/sbin/nologin {}", setup.user),
                )
        };
        out.push_str(&line);
        out.push('\n');
    }
    Ok(out)
}

/// Writes the unit into `setup.unit_dir` (mode 0644, atomically and durably): a different
/// file there is replaced only with `force`; the same one is left as it is.
pub fn install(setup: &ServiceSetup) -> Result<Installed, ServiceError> {
    let unit = render(setup)?;
    let path = setup.unit_dir.join(UNIT_NAME);
    let shown = path.display().to_string();
    let write_err = |cause: anyhow::Error| ServiceError::Write {
        path: shown.clone(),
        cause,
    };
    match std::fs::read(&path) {
        Ok(held) if held == unit.as_bytes() => return Ok(Installed::Unchanged(path)),
        Ok(_) if !setup.force => return Err(ServiceError::Different(shown)),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(write_err(e.into())),
    }
    write_unit(&setup.unit_dir, &path, unit.as_bytes(), setup.force).map_err(write_err)?;
    Ok(Installed::Written(path))
}

/// Temp file (0644), fsync, then renamed over the unit with `replace`, else moved only if no
/// file is there (one put there meanwhile is never replaced); the folder fsynced.
fn write_unit(dir: &Path, path: &Path, bytes: &[u8], replace: bool) -> anyhow::Result<()> {
    use std::io::Write;
    let tmp = crate::files::temp_path(dir);
    let written = (|| -> anyhow::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        f.write_all(bytes)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            // Whatever the umask: systemd and the administrator read it, root writes it.
            f.set_permissions(std::fs::Permissions::from_mode(0o644))?;
        }
        f.sync_all()?;
        if replace {
            std::fs::rename(&tmp, path)?;
        } else {
            crate::files::move_no_clobber(&tmp, path)
                .with_context(|| format!("{} appeared meanwhile", path.display()))?;
        }
        crate::files::sync_dir(dir)?;
        Ok(())
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// The steps left to the administrator, in Japanese and English.
pub fn remaining_steps(setup: &ServiceSetup) -> String {
    let (user, home, binary) = (&setup.user, setup.home.display(), setup.binary.display());
    format!(
        "\
残りの手順（root で実行してください。このコマンドは実行しません）
Remaining steps (run them as root; this command does not):
  1. 専用の利用者を作る（まだなければ） / create the dedicated user (if it does not exist yet):
       useradd --system --home-dir {home} --shell /usr/sbin/nologin {user}
  2. 事業所の設定がまだなら作り、持ち主をその利用者にする / set up the office if not done yet, owned by that user:
       renkei init --home {home} …   (README.md, For a care office)
       chown -R {user}:{user} {home}
  3. renkei をユニットが指す場所に置く（まだなければ） / put renkei where the unit runs it (if not there yet):
       install -m 0755 renkei {binary}
  4. systemd に読み込ませ、起動し、起動時にも動くようにする / make systemd read it, start it, and start it at boot:
       systemctl daemon-reload
       systemctl enable --now renkei
  5. 確かめる / check:
       systemctl status renkei
       journalctl -u renkei -e
"
    )
}

/// `renkei install-service`: writes the unit and prints what is left to do.
pub fn install_command(setup: &ServiceSetup) -> anyhow::Result<ExitCode> {
    match install(setup) {
        Ok(Installed::Written(p)) => println!(
            "ユニットファイルを書きました / wrote the unit file: {}",
            p.display()
        ),
        Ok(Installed::Unchanged(p)) => println!(
            "同じユニットファイルが既にあります（変更なし） / the same unit file is there already (unchanged): {}",
            p.display()
        ),
        Err(e) => {
            eprintln!("renkei: {e}");
            return Ok(ExitCode::from(1));
        }
    }
    print!("{}", remaining_steps(setup));
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup(dir: &Path) -> ServiceSetup {
        ServiceSetup {
            unit_dir: dir.to_path_buf(),
            user: "kaigo".into(),
            home: "/var/lib/kaigo-renkei".into(),
            binary: "/opt/renkei/bin/renkei".into(),
            force: false,
        }
    }

    /// The template still says what `render` fills in: a change to the example unit that
    /// moves these fails here, not at an office.
    #[test]
    fn the_template_holds_the_values_it_fills_in() {
        assert!(UNIT_TEMPLATE.contains(&format!("\nUser={TEMPLATE_USER}\n")));
        assert!(UNIT_TEMPLATE.contains(&format!("\nGroup={TEMPLATE_USER}\n")));
        assert!(UNIT_TEMPLATE.contains(&format!(
            "\nExecStart={TEMPLATE_BINARY} run --home {TEMPLATE_HOME}\n"
        )));
        assert!(UNIT_TEMPLATE.contains(&format!("\nReadWritePaths={TEMPLATE_HOME}\n")));
    }

    #[test]
    fn the_unit_names_the_user_home_and_binary_given_and_nothing_of_the_template() {
        let unit = render(&setup(Path::new("/tmp"))).unwrap();
        assert!(unit.contains("\nUser=kaigo\nGroup=kaigo\n"), "{unit}");
        assert!(
            unit.contains("\nExecStart=/opt/renkei/bin/renkei run --home /var/lib/kaigo-renkei\n")
        );
        assert!(unit.contains("\nReadWritePaths=/var/lib/kaigo-renkei\n"));
        assert!(!unit.contains("/srv/renkei") && !unit.contains("/usr/local/bin"));
        assert!(!unit.contains("=renkei\n"), "{unit}");
        // The sandboxing is kept as shipped.
        for l in [
            "ProtectSystem=strict",
            "PrivateTmp=yes",
            "NoNewPrivileges=yes",
        ] {
            assert!(unit.contains(l), "{l}");
        }
    }

    #[test]
    fn names_and_paths_systemd_would_misread_are_refused() {
        let dir = Path::new("/tmp");
        for user in ["", "Renkei", "1abc", "a b", "a;b", &"a".repeat(33)] {
            let s = ServiceSetup {
                user: user.into(),
                ..setup(dir)
            };
            assert!(
                matches!(render(&s), Err(ServiceError::BadUser(_))),
                "{user:?}"
            );
        }
        for home in [
            "srv/renkei",
            "/srv/my renkei",
            "/srv/%h",
            "/srv/a\nExecStartPre=/bin/x",
        ] {
            let s = ServiceSetup {
                home: home.into(),
                ..setup(dir)
            };
            assert!(
                matches!(render(&s), Err(ServiceError::BadPath { .. })),
                "{home:?}"
            );
        }
    }
}
