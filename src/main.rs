//! The `pcii-portal` command: `serve` (the default), `migrate`, `user`, `keys`, `audit`.

use std::io::Read;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use pcii_portal::audit::log::Actor;
use pcii_portal::auth::accounts::{self, AccountChange, Membership, NewAccount};
use pcii_portal::auth::password::Hasher;
use pcii_portal::crypto::keyfile::AtRest;
use pcii_portal::domain::Role;
use pcii_portal::key_store::protection::{self, Target};
use pcii_portal::models::account as account_model;
use pcii_portal::{cli, config, logging};

#[derive(Parser)]
#[command(
    name = "pcii-portal",
    version,
    about = "Intake portal for Protected Critical Infrastructure Information"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// `shares` mode: a file holding one custodian's decrypted share (repeatable); the CLI asks on the
    /// terminal for any still missing. Never the share itself as an argument.
    #[arg(long, global = true, value_name = "FILE")]
    share_file: Vec<std::path::PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Start the portal (the default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Manage accounts.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Organisations (to attach accounts by id).
    Organisation {
        #[command(subcommand)]
        command: OrganisationCommand,
    },
    /// Manage the key store.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// The audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// A consistent copy of the database (SQLite) and of the stored files it names, each checked, into a new or
    /// empty directory. Made beside running instances; the keys are not included.
    /// With `--check DIR`, checks a backup instead: finished, its database the one its manifest names, every stored
    /// file there with the digest the database records.
    #[command(group(clap::ArgGroup::new("what").required(true).args(["to", "check"])))]
    Backup {
        /// Where (created 0700; must be missing or empty).
        #[arg(long, value_name = "DIR")]
        to: Option<std::path::PathBuf>,
        /// A backup to check (reads it only; needs no keys).
        #[arg(long, value_name = "DIR")]
        check: Option<std::path::PathBuf>,
    },
    /// The operator's overview: queues, background jobs, audit checkpoints and verification, backups, key
    /// generations, and what needs attention. Needs no keys. Exits 0 when nothing needs attention, 2 when something
    /// does (listed first), 1 when the overview could not be taken.
    Status {
        /// Print it as JSON.
        #[arg(long)]
        json: bool,
    },
    /// `shares` mode: give this custodian's decrypted share (`--share-file`, or asked without echo) to the sealed
    /// portal running on this host, through `keys/unseal.sock`.
    Unseal,
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create an account of any role.
    Add {
        #[arg(long)]
        email: String,
        /// submitter, officer, authorized_user, auditor or administrator.
        #[arg(long)]
        role: String,
        /// The person's name (defaults to the email).
        #[arg(long)]
        name: Option<String>,
        /// Attach the account to this existing organisation (its id, from `organisation list`).
        #[arg(long, conflicts_with = "new_organisation")]
        organisation_id: Option<String>,
        /// Create a new organisation of this name for the account. Names never match an existing one.
        #[arg(long)]
        new_organisation: Option<String>,
        /// Make the account its organisation's administrator (invites and removes members).
        #[arg(long)]
        org_admin: bool,
        /// The agency or office of a staff account.
        #[arg(long)]
        agency: Option<String>,
        /// Read the password from standard input instead of generating one.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Disable an account and end its sessions.
    Disable {
        #[arg(long)]
        email: String,
        /// Why (kept in the audit log).
        #[arg(long, default_value = "disabled by the operator")]
        reason: String,
    },
    /// Delete every second factor of an account (app, passkeys, recovery codes), end its sessions and void its
    /// password: the person chooses a new one through "Forgot your password?" (a link to its address) and enrols
    /// again at the next sign-in. For the host's operator when no two administrators can (an administrator
    /// who lost theirs with no other to approve); in the portal, two administrators do it.
    ResetFactors {
        #[arg(long)]
        email: String,
        /// Why, and how the person's identity was checked (kept in the audit log).
        #[arg(long)]
        reason: String,
    },
    /// Remove self-registrations whose address is still not confirmed `unconfirmed_account_days` after they were
    /// made, each with the organisation made for it, when nothing else refers to them (the running server does this
    /// every hour). Prints the ids of what goes.
    PurgeUnconfirmed {
        /// Only say what would be removed.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Subcommand)]
enum OrganisationCommand {
    /// Every organisation: id, verified or not, name (names are not unique; ids are what `user add` takes).
    List,
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Generate the key store (age identity, cookie secret, audit signing key) if missing.
    Init,
    /// List the master identities: fingerprint, created, current, and how many data keys each wraps.
    List,
    /// Generate a new master identity and re-wrap every data key to it; resumable; retires old identities.
    /// With --data-keys: give every submission a fresh data key and re-encrypt its blobs (resumable).
    Rotate {
        /// Replace the data keys and re-encrypt the blobs (after a data-key compromise), instead of the master key.
        #[arg(long)]
        data_keys: bool,
    },
    /// Convert a store from before data keys: re-encrypt blobs sealed straight to a master identity to a data key
    /// of their submission. Resumable.
    Convert,
    /// Protect the keys at rest: under a passphrase, or split among custodians (k of n). Converts a
    /// clear store (or one protected the other way); a re-run after an interruption finishes the job.
    Protect {
        /// `passphrase` or `shares`.
        #[arg(long)]
        mode: String,
        /// passphrase: read the new passphrase from this file instead of asking twice on the terminal.
        #[arg(long, value_name = "FILE")]
        passphrase_file: Option<std::path::PathBuf>,
        /// shares: how many custodians must give their share to unseal.
        #[arg(long)]
        threshold: Option<usize>,
        /// shares: a custodian's age X25519 recipient (age1...); one per custodian.
        #[arg(long)]
        custodian: Vec<String>,
        /// On a sealed store: make a new unlock key too (to change the passphrase, or to re-split among new
        /// custodians), so that an old copy of the wrapper and its old passphrase or shares open nothing
        /// current. Stop every instance first; each starts again with the new passphrase or shares.
        #[arg(long)]
        new_unlock_key: bool,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Verify the hash chain and signed checkpoints, of the live database or of an export. The live database
    /// is verified from the last checkpoint an earlier verify found intact, unless `--full`.
    Verify {
        /// An export zip to verify offline instead of the live database.
        #[arg(long)]
        export: Option<std::path::PathBuf>,
        /// A checkpoint file kept outside the portal; its public key is trusted.
        #[arg(long)]
        checkpoint: Option<std::path::PathBuf>,
        /// Verify the whole chain from the first entry, not only what was added after the last verified
        /// checkpoint (the default): what finds a change made before that checkpoint.
        #[arg(long, conflicts_with = "export")]
        full: bool,
    },
    /// Sign a checkpoint of the chain head now.
    Checkpoint,
}

fn main() -> ExitCode {
    // A core dump would write the master key (and in the sealed modes the key that unseals it) to disk, beside the
    // data it protects: none is made, whatever limit the shell or the unit gave (systemd-coredump honours it too).
    if let Err(e) = rustix::process::setrlimit(
        rustix::process::Resource::Core,
        rustix::process::Rlimit {
            current: Some(0),
            maximum: Some(0),
        },
    ) {
        eprintln!("warning: core dumps could not be turned off: {e}");
    }
    let cli = Cli::parse();
    cli::set_share_files(cli.share_file.clone());
    let figment = pcii_portal::figment();
    let settings = match config::load(&figment) {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    // Rocket's own `log` output is bridged and kept at warnings (by `logging`, whatever `PCII_LOG` says).
    logging::init(&settings.log_format, "info");
    // Every command's error, typed or not, is printed by its `Display`.
    let result: Result<(), Box<dyn std::error::Error>> = match cli.command.unwrap_or(Command::Serve)
    {
        Command::Serve => serve(figment).map_err(Into::into),
        Command::Unseal => cli::unseal_local(&settings).map_err(Into::into),
        Command::Status { json } => match cli::status(&settings, json) {
            Ok(false) => Ok(()),
            Ok(true) => return ExitCode::from(2),
            Err(e) => Err(e.into()),
        },
        Command::Backup { to, check } => match (to, check) {
            (Some(to), _) => cli::backup(&settings, &to).map_err(Into::into),
            (None, Some(dir)) => cli::backup_check(&dir).map_err(Into::into),
            // clap requires one of the two.
            (None, None) => Err("backup: --to DIR or --check DIR".into()),
        },
        Command::Migrate => cli::open_db(&settings)
            .map(|_| println!("migrations applied"))
            .map_err(Into::into),
        Command::User { command } => user(&settings, command).map_err(Into::into),
        Command::Organisation {
            command: OrganisationCommand::List,
        } => organisation_list(&settings).map_err(Into::into),
        Command::Keys { command } => match command {
            KeysCommand::Init => cli::init_keys(&settings)
                .map(|k| {
                    if k.generated.is_empty() {
                        println!(
                            "key store already initialised in {}",
                            config::display_path(&settings.keys_dir)
                        );
                    } else {
                        warn_keys(&settings, &k.generated);
                    }
                })
                .map_err(Into::into),
            KeysCommand::List => cli::keys_list(&settings).map_err(Into::into),
            KeysCommand::Rotate { data_keys } => {
                cli::keys_rotate(&settings, data_keys).map_err(Into::into)
            }
            KeysCommand::Convert => cli::keys_convert(&settings).map_err(Into::into),
            KeysCommand::Protect {
                mode,
                passphrase_file,
                threshold,
                custodian,
                new_unlock_key,
            } => protect_target(&mode, passphrase_file.as_deref(), threshold, custodian).and_then(
                |target| cli::keys_protect(&settings, target, new_unlock_key).map_err(Into::into),
            ),
        },
        Command::Audit { command } => match command {
            AuditCommand::Verify {
                export: Some(path),
                checkpoint,
                full: _,
            } => cli::audit_verify_export(&path, checkpoint.as_deref()).map_err(Into::into),
            AuditCommand::Verify {
                export: None,
                checkpoint,
                full,
            } => cli::audit_verify_live(&settings, checkpoint.as_deref(), full).map_err(Into::into),
            AuditCommand::Checkpoint => cli::audit_checkpoint(&settings).map_err(Into::into),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

fn fail(message: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("pcii-portal: {message}");
    ExitCode::FAILURE
}

fn warn_keys(settings: &config::Settings, generated: &[String]) {
    eprintln!(
        "!!! NEW KEYS GENERATED in {} ({}): BACK THEM UP NOW, OFFLINE. Without them no submission can ever be decrypted. !!!",
        config::display_path(&settings.keys_dir),
        generated.join(", ")
    );
}

/// The target of `keys protect`, from its arguments.
fn protect_target(
    mode: &str,
    passphrase_file: Option<&std::path::Path>,
    threshold: Option<usize>,
    custodians: Vec<String>,
) -> Result<Target, Box<dyn std::error::Error>> {
    match mode {
        "passphrase" => Ok(Target::Passphrase(protection::new_passphrase(
            passphrase_file,
        )?)),
        "shares" => Ok(Target::Shares {
            threshold: threshold.ok_or("--mode shares needs --threshold K")?,
            custodians,
        }),
        other => Err(format!("--mode must be `passphrase` or `shares`, not `{other}`").into()),
    }
}

/// Opens the keys the way `master_key_protection` says: in clear (with a warning), with the passphrase
/// (its file, or asked on the terminal), or — `shares` — by serving the sealed portal until k custodians
/// have unsealed it at `/unseal`.
fn unlock_for_serve(
    figment: &rocket::figment::Figment,
    settings: &config::Settings,
) -> Result<AtRest, String> {
    let origin = config::origin(figment, settings);
    match protection::Mode::of(settings) {
        protection::Mode::File => {
            eprintln!(
                "!!! master_key_protection = \"file\": the master keys in {} rest IN CLEAR; anyone with a copy of it and of the data can read every submission. Use `pcii-portal keys protect`. !!!",
                config::display_path(&settings.keys_dir)
            );
            Ok(AtRest::Clear)
        }
        protection::Mode::Passphrase => protection::unlock_passphrase(settings, true)
            .map(|k| AtRest::Sealed(Arc::new(k)))
            .map_err(|e| e.to_string()),
        protection::Mode::Shares => {
            let (sealed, unlocked) = pcii_portal::web::sealed::build(figment.clone())?;
            eprintln!(
                "*** The portal is SEALED. Key custodians: give your shares at {origin}/unseal ***"
            );
            rocket::execute(sealed.launch()).map_err(|e| format!("sealed server: {e}"))?;
            let key = unlocked
                .try_recv()
                .map_err(|_| "stopped while still sealed".to_string())?;
            eprintln!("unsealed; starting the portal");
            Ok(AtRest::Sealed(Arc::new(key)))
        }
    }
}

fn serve(figment: rocket::figment::Figment) -> Result<(), String> {
    let settings = config::load(&figment)?;
    pcii_portal::check_configuration(&figment)?;
    // Held until the process exits: `keys protect` refuses to run under a portal (module documentation).
    let _serving =
        pcii_portal::key_store::in_use::serving(&settings.keys_dir).map_err(|e| e.to_string())?;
    let at_rest = unlock_for_serve(&figment, &settings)?;
    let (rocket, startup) = pcii_portal::build_unlocked(
        figment.clone(),
        pcii_portal::clock::Clock::system(),
        at_rest,
    )?;
    if !startup.generated_keys.is_empty() {
        warn_keys(&settings, &startup.generated_keys);
    }
    let origin = config::origin(&figment, &settings);
    for warning in config::exposure_warnings(&figment)
        .into_iter()
        .chain(config::grace_warnings(&settings))
        .chain(config::mail_warnings(&settings))
    {
        eprintln!("*** WARNING: {warning} ***");
        tracing::warn!("{warning}");
    }
    if let Some(token) = startup.setup_token {
        // Printed, never logged: the token is a credential.
        eprintln!(
            "*** No administrator yet. Create the first one within {} minutes at: {origin}/setup/{token} ***",
            settings.setup_link_minutes
        );
    }
    eprintln!(
        "pcii-portal listening on {origin} (data: {}; {})",
        config::display_path(&settings.data_dir),
        startup.mail_route
    );
    rocket::execute(rocket.launch())
        .map(|_| ())
        .map_err(|e| format!("server: {e}"))
}

fn organisation_list(settings: &config::Settings) -> Result<(), String> {
    let db = cli::open_existing_db(settings).map_err(|e| e.to_string())?;
    let mut conn = db.get().map_err(|e| e.to_string())?;
    let all = account_model::organisations(&mut conn).map_err(|e| e.to_string())?;
    println!("{:<32}  {:<10}  name", "id", "verified");
    for o in all {
        let state = match (&o.merged_into, o.verified_at) {
            (Some(_), _) => "merged",
            (None, Some(_)) => "verified",
            (None, None) => "-",
        };
        println!("{:<32}  {state:<10}  {}", o.id, o.name);
    }
    Ok(())
}

fn user(settings: &config::Settings, command: UserCommand) -> Result<(), String> {
    // Keys first: a missing key store is refused before a database is made.
    let opened = cli::open_keys(settings).map_err(|e| e.to_string())?;
    // Only `user add` may make the database (the first administrator of a new install); the others act on accounts
    // it holds, and run from the wrong directory must not make an empty one and report on that.
    let db = if matches!(command, UserCommand::Add { .. }) {
        cli::open_db(settings)
    } else {
        cli::open_existing_db(settings)
    }
    .map_err(|e| e.to_string())?;
    let audit = pcii_portal::audit::log::AuditLog::new(
        opened.audit_signer,
        settings.audit_checkpoint_every,
    );
    let mut conn = db.get().map_err(|e| e.to_string())?;
    match command {
        UserCommand::Add {
            email,
            role,
            name,
            organisation_id,
            new_organisation,
            org_admin,
            agency,
            password_stdin,
        } => {
            let role = Role::parse(&role).ok_or_else(|| {
                format!("unknown role `{role}`: use submitter, officer, authorized_user, auditor or administrator")
            })?;
            let (password, generated) = if password_stdin {
                let mut s = String::new();
                std::io::stdin()
                    .take(4096)
                    .read_to_string(&mut s)
                    .map_err(|e| format!("reading stdin: {e}"))?;
                (s.trim_end_matches(['\r', '\n']).to_string(), false)
            } else {
                (
                    pcii_portal::auth::sessions::new_token()[..24].to_string(),
                    true,
                )
            };
            let hasher = Hasher::new(settings)?;
            let membership = match (organisation_id, new_organisation) {
                (Some(id), _) => Membership::Existing(id),
                (None, Some(name)) => Membership::New(name),
                (None, None) => Membership::None,
            };
            let new = NewAccount {
                email: email.clone(),
                display_name: name.unwrap_or_else(|| email.clone()),
                role,
                membership,
                org_admin,
                agency,
                password: password.clone(),
            };
            let now = pcii_portal::clock::Clock::system().now();
            match accounts::create(&db, &audit, &hasher, &Actor::cli(), new, now)
                .map_err(|e| e.to_string())?
            {
                Ok(id) => {
                    let user = account_model::find(&mut conn, &id).map_err(|e| e.to_string())?;
                    match &user.organisation_id {
                        Some(org) => println!(
                            "created {} account {} in organisation {org}{}",
                            role.label(),
                            user.email,
                            if user.org_admin {
                                " (organisation administrator)"
                            } else {
                                ""
                            }
                        ),
                        None => println!("created {} account {}", role.label(), user.email),
                    }
                    if generated {
                        println!("one-time password (change it at first sign-in): {password}");
                    }
                    Ok(())
                }
                Err(errors) => Err(errors.0.values().cloned().collect::<Vec<_>>().join(" ")),
            }
        }
        UserCommand::Disable { email, reason } => {
            let user = account_model::find_by_email(&mut conn, &email)
                .map_err(|e| e.to_string())?
                .ok_or_else(|| {
                    format!(
                        "no account with email {}",
                        account_model::normalize_email(&email)
                    )
                })?;
            accounts::change_account(
                &mut conn,
                &audit,
                &Actor::cli(),
                &user.id,
                AccountChange::Disable { reason },
            )
            .map_err(|e| e.to_string())?;
            println!("disabled {}; its sessions have ended", user.email);
            Ok(())
        }
        UserCommand::PurgeUnconfirmed { dry_run } => {
            let days = settings.unconfirmed_account_days;
            let now = pcii_portal::clock::Clock::system().now();
            let done = pcii_portal::auth::unconfirmed::purge(
                &mut conn,
                &audit,
                &Actor::cli(),
                days,
                now,
                dry_run,
            )
            .map_err(|e| e.to_string())?;
            let verb = if dry_run { "would remove" } else { "removed" };
            for (account, organisation) in &done.removed {
                println!("{verb} account {account} with organisation {organisation}");
            }
            println!(
                "{verb} {} unconfirmed registration(s) older than {days} days; {} kept (something else refers to them)",
                done.removed.len(),
                done.kept
            );
            if done.failed > 0 {
                return Err(format!(
                    "{} could not be removed (see the log); run the command again",
                    done.failed
                ));
            }
            Ok(())
        }
        UserCommand::ResetFactors { email, reason } => {
            let user = account_model::find_by_email(&mut conn, &email)
                .map_err(|e| e.to_string())?
                .ok_or_else(|| {
                    format!(
                        "no account with email {}",
                        account_model::normalize_email(&email)
                    )
                })?;
            if reason.trim().is_empty() {
                return Err(
                    "give the reason (--reason), e.g. how the person's identity was checked".into(),
                );
            }
            accounts::change_account(
                &mut conn,
                &audit,
                &Actor::cli(),
                &user.id,
                AccountChange::ResetFactors { reason },
            )
            .map_err(|e| e.to_string())?;
            println!(
                "reset the second factors of {}; its sessions have ended and its password no longer works. The person \
                 chooses a new one with \"Forgot your password?\" (a link to the account's address), then sets up a new \
                 factor at the next sign-in.",
                user.email
            );
            Ok(())
        }
    }
}
