//! What each subcommand does: thin glue between the command line and the library crates.

use crate::cli::{Cli, Command, DevicesCmd, FolderCmd, LoginArgs, Registration, S3Args, ServerArgs, ServerCmd};
use crate::output::{human_bytes, human_time};
use anyhow::{Context, Result, bail};
use filesync_agent::agent::{self, AgentOptions};
use filesync_agent::config::Home;
use filesync_agent::ops;
use filesync_agent::status::Progress;
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

fn dirs() -> Option<directories::ProjectDirs> {
    directories::ProjectDirs::from("", "", "filesync")
}

fn home_of(cli: &Cli) -> Result<Home> {
    match &cli.home {
        Some(h) => Ok(Home::new(h.clone())),
        // On Windows the installed service's home, so this user's commands talk to it.
        None => match filesync_service::installed_home() {
            Some(service_home) => Ok(Home::new(service_home)),
            None => Ok(Home::new(
                dirs().context("cannot find a home directory; pass --home DIR")?.config_dir().to_path_buf(),
            )),
        },
    }
}

pub async fn run(cli: Cli) -> Result<ExitCode> {
    let home = home_of(&cli);
    match cli.command {
        Command::Server(args) => server(*args).await,
        Command::Register(args) => login(&home?, args, true).await,
        Command::Login(args) => login(&home?, args, false).await,
        Command::LoginAgain { password_stdin } => login_again(&home?, password_stdin).await,
        Command::Logout { force } => logout(&home?, force).await,
        Command::Devices(cmd) => devices(&home?, cmd).await,
        Command::Folder(cmd) => folder(&home?, cmd).await,
        Command::Sync { quiet, json } => sync(&home?, quiet || json, json).await,
        Command::Agent(args) => run_agent(&home?, args).await,
        Command::Ui(args) => crate::ui_cmd::run(&home?, args).await,
        Command::Password { password_stdin, log_out_other_devices, keep_other_devices } => {
            change_password(&home?, password_stdin, log_out_other_devices, keep_other_devices).await
        }
        Command::Status { json, wait, timeout } => crate::status_cmd::run(&home?, json, wait, timeout).await,
        Command::Pause { name } => crate::settings_cmd::pause(&home?, name, true).await,
        Command::Resume { name } => crate::settings_cmd::pause(&home?, name, false).await,
        Command::Conflicts { cmd } => crate::conflicts_cmd::run(&home?, cmd).await,
        Command::Service(cmd) => crate::service_cmd::run(cmd, cli.home, home),
        Command::History { path, json } => crate::history_cmd::history(&home?, &path, json).await,
        Command::Restore { path, version, to } => {
            crate::history_cmd::restore(&home?, &path, version, to.as_deref()).await
        }
        Command::Trash(cmd) => crate::history_cmd::trash(&home?, cmd).await,
        Command::Usage { json } => crate::history_cmd::usage(&home?, json).await,
    }
}

fn server_data_dir(data: Option<PathBuf>) -> Result<PathBuf> {
    match data {
        Some(d) => Ok(d),
        None => Ok(dirs().context("cannot find a data directory; pass --data DIR")?.data_dir().join("server")),
    }
}

async fn server(args: ServerArgs) -> Result<ExitCode> {
    if let Some(ServerCmd::Fingerprint { data, tls_cert, tls_key }) = args.command {
        let mut config = filesync_server::ServerConfig::new(server_data_dir(data)?);
        config.tls_cert = tls_cert;
        config.tls_key = tls_key;
        println!("{}", filesync_server::load_identity(&config)?.fingerprint());
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(ServerCmd::Admin(admin)) = args.command {
        let database = database_config(admin.database, admin.database_password_file.as_deref())?;
        return crate::admin_cmd::run(server_data_dir(admin.data)?, database, admin.command).await;
    }
    if let Some(ServerCmd::Migrate(m)) = args.command {
        let database =
            database_config(Some(m.database), m.database_password_file.as_deref())?.expect("a URL was given");
        return crate::migrate_cmd::run(&m.from, database, s3_config(&m.s3)?, m.chunks).await;
    }
    let registration = match args.registration {
        Some(Registration::Open) => filesync_server::Registration::Open,
        Some(Registration::Closed) => filesync_server::Registration::Closed,
        Some(Registration::Invite) => filesync_server::Registration::Invite,
        None if crate::admin_cmd::is_loopback(&args.listen).await => filesync_server::Registration::Open,
        None => bail!(
            "the server would listen on {}, which other computers can reach: choose who may create accounts with \
             --registration open (anyone who can reach the server), --registration invite (whoever has a code \
             from `filesync server admin invite`) or --registration closed (only accounts made with \
             `filesync server admin create-user`)",
            args.listen
        ),
    };
    let mut config = filesync_server::ServerConfig::new(server_data_dir(args.data)?);
    config.listen = args.listen;
    config.registration = registration;
    config.default_quota = args.default_quota.and_then(|q| q.0);
    config.tls_cert = args.tls_cert;
    config.tls_key = args.tls_key;
    config.retention = match args.retention_secs {
        Some(secs) => filesync_store::RetentionPolicy::seconds(secs),
        None => filesync_store::RetentionPolicy::days(args.retention_days),
    };
    if let Some(secs) = args.gc_grace_secs {
        config.gc_grace = std::time::Duration::from_secs(secs);
    }
    if let Some(secs) = args.maintenance_every {
        let every = std::time::Duration::from_secs(secs);
        config.maintenance = filesync_server::maintenance::MaintenanceSchedule { first_after: every, every };
    }
    let limits = &mut config.limits;
    let mib = |m: u32| (m as usize) << 20;
    limits.max_connections = args.max_connections.map_or(limits.max_connections, |n| n as usize);
    limits.max_connections_per_address =
        args.max_connections_per_address.map_or(limits.max_connections_per_address, |n| n as usize);
    limits.max_unauthenticated = args.max_unauthenticated.map_or(limits.max_unauthenticated, |n| n as usize);
    limits.memory = args.buffer_memory.map_or(limits.memory, mib);
    limits.memory_per_address = args.buffer_memory_per_address.map_or(limits.memory_per_address, mib);
    config.s3 = s3_config(&args.s3)?;
    config.database = database_config(args.database, args.database_password_file.as_deref())?;
    let data_dir = config.data_dir.clone();
    let config_quota = config.default_quota;
    let database_shown = config.database.as_ref().map(|d| d.display_url());
    let server = filesync_server::Server::open(config).await?;
    let addr = server.local_addr();
    let shown = if addr.ip().is_unspecified() { format!("127.0.0.1:{}", addr.port()) } else { addr.to_string() };
    println!("FileSync server listening on {addr}");
    println!("data directory: {}", data_dir.display());
    if let Some(db) = &database_shown {
        println!("metadata: PostgreSQL at {db}");
    }
    println!("certificate fingerprint: {}", server.fingerprint());
    println!("{}", crate::admin_cmd::describe_registration(registration, config_quota));
    println!();
    println!("Next, on each computer (use this machine's address instead of 127.0.0.1 from elsewhere):");
    println!("  filesync register --server {shown} --user NAME --fingerprint {}", server.fingerprint());
    println!("  filesync folder add ~/Documents --name Documents");
    println!("  filesync agent");
    std::io::stdout().flush().ok();
    server.run(shutdown_signal()).await;
    Ok(ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("signal handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// A password from the first line of standard input, or asked at the terminal with `prompt`
/// (twice when `confirm`).
pub(crate) fn read_password(from_stdin: bool, prompt: &str, confirm: bool) -> Result<String> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).context("reading the password from standard input")?;
        let pw = line.trim_end_matches(['\r', '\n']).to_string();
        if pw.is_empty() {
            bail!("no password on standard input");
        }
        return Ok(pw);
    }
    if !std::io::stdin().is_terminal() {
        bail!("no terminal to ask for the password; use --password-stdin");
    }
    let pw = rpassword::prompt_password(prompt)?;
    if confirm && rpassword::prompt_password("Repeat password: ")? != pw {
        bail!("the passwords do not match");
    }
    Ok(pw)
}

async fn login(home: &Home, args: LoginArgs, register: bool) -> Result<ExitCode> {
    let config = home.load()?;
    let fingerprint = if args.fingerprint.is_some() {
        args.fingerprint.clone()
    } else if config.server.as_deref() == Some(args.server.as_str()) && config.fingerprint.is_some() {
        None // the one pinned at the first login
    } else if std::io::stdin().is_terminal() && !args.password_stdin {
        let fp = ops::account::probe(&args.server).await?;
        println!("The server at {} presents this certificate fingerprint:", args.server);
        println!("  {fp}");
        println!("Check it against `filesync server fingerprint` on the server.");
        print!("Trust this server? [y/N] ");
        std::io::stdout().flush().ok();
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            bail!("not trusted; nothing was sent to the server");
        }
        Some(fp)
    } else {
        bail!(
            "the certificate of {} is not pinned yet and there is no terminal to confirm it: pass --fingerprint SHA256:… \
             (run `filesync server fingerprint` on the server to print it)",
            args.server
        );
    };
    if let Some(fp) = &fingerprint {
        // Refuse a malformed fingerprint before asking for the password.
        filesync_proto::parse_fingerprint(fp).with_context(|| {
            format!("{fp:?} is not a certificate fingerprint; it looks like SHA256: followed by 64 hex digits")
        })?;
    }
    let password = read_password(args.password_stdin, "Password: ", register && !args.password_stdin)?;
    let credentials = ops::account::Credentials {
        server: args.server.clone(),
        fingerprint,
        user: args.user.clone(),
        password,
        device_name: args.device_name.clone().unwrap_or_else(ops::account::default_device_name),
        register,
        invite: args.invite.clone().filter(|_| register),
    };
    let done = ops::account::log_in(home, &credentials).await?;
    ops::configuration_changed(home).await;
    if let Some(previous) = &done.switched_from {
        // A different server: its folders' sync state means nothing there.
        eprintln!("note: switching from {previous} to {}", done.server);
    }
    if register {
        println!("Registered {} on {}.", done.user, done.server);
    }
    println!(
        "Logged in as {} on {}; this computer is device {} ({}).",
        done.user, done.server, done.device_id, done.device_name
    );
    if home.load()?.folders.is_empty() {
        println!("Next: filesync folder add PATH [--name NAME], then filesync agent (or filesync sync).");
    }
    Ok(ExitCode::SUCCESS)
}

async fn login_again(home: &Home, password_stdin: bool) -> Result<ExitCode> {
    let config = home.load()?;
    let (Some(server), Some(user)) = (&config.server, &config.user) else {
        bail!("this computer was never logged in; use `filesync login --server HOST --user NAME` first");
    };
    if !password_stdin {
        println!(
            "Logging {} in again as {user} on {server}.",
            config.device_name.as_deref().unwrap_or("this computer")
        );
    }
    let password = read_password(password_stdin, "Password: ", false)?;
    let done = ops::account::log_in_again(home, &password).await?;
    ops::configuration_changed(home).await;
    println!(
        "Logged in again as {} on {}; this computer is device {} ({}) and syncs its folders again.",
        done.user, done.server, done.device_id, done.device_name
    );
    Ok(ExitCode::SUCCESS)
}

async fn change_password(home: &Home, from_stdin: bool, log_out: bool, keep: bool) -> Result<ExitCode> {
    let (current, new) = if from_stdin {
        let mut lines = std::io::stdin().lock().lines();
        let mut next = || -> Result<String> {
            Ok(lines.next().context("standard input needs two lines: the current and the new password")??)
        };
        (next()?, next()?)
    } else {
        if !std::io::stdin().is_terminal() {
            bail!("no terminal to ask for the passwords; use --password-stdin");
        }
        let current = rpassword::prompt_password("Current password: ")?;
        let new = rpassword::prompt_password("New password: ")?;
        if rpassword::prompt_password("Repeat the new password: ")? != new {
            bail!("the new passwords do not match");
        }
        (current, new)
    };
    let log_out_others = if log_out || keep || from_stdin {
        log_out
    } else {
        print!("Log out every other computer of this account (each must log in again with the new password)? [y/N] ");
        std::io::stdout().flush().ok();
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        matches!(answer.trim(), "y" | "Y" | "yes")
    };
    let changed = ops::account::change_password(home, &current, &new, log_out_others).await?;
    match changed.logged_out_others {
        false => println!("Password changed; your computers stay logged in."),
        true => println!("Password changed; every other computer of this account is logged out."),
    }
    Ok(ExitCode::SUCCESS)
}

async fn logout(home: &Home, force: bool) -> Result<ExitCode> {
    let out = ops::account::log_out(home, force).await?;
    ops::configuration_changed(home).await;
    match out {
        ops::account::LoggedOut::NotLoggedIn => println!("This computer is not logged in."),
        ops::account::LoggedOut::Revoked => println!("Logged out; this device's token is revoked."),
        ops::account::LoggedOut::ForgottenOnly(why) => {
            eprintln!("warning: could not revoke the token on the server ({why}); forgetting it here anyway");
            println!("Logged out on this computer.");
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn devices(home: &Home, cmd: DevicesCmd) -> Result<ExitCode> {
    match cmd {
        DevicesCmd::List { json } => {
            let list = ops::account::list_devices(home).await?;
            if json {
                // The same view as the UI's `GET /api/devices`.
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                for d in list {
                    let mut flags = String::new();
                    if d.current {
                        flags.push_str("  (this computer)");
                    }
                    if d.revoked {
                        flags.push_str("  (revoked)");
                    }
                    println!("{}\t{}\tlast seen {}{}", d.id, d.name, human_time(d.last_seen.max(d.created_at)), flags);
                }
            }
        }
        DevicesCmd::Rename { id, name } => {
            let name = ops::account::rename_device(home, id, &name).await?;
            println!("Device {id} is now called {name:?}.");
        }
        DevicesCmd::Revoke { id } => {
            ops::account::revoke_device(home, id).await?;
            println!("Device {id} is revoked; it can no longer connect.");
        }
        DevicesCmd::Remove { id } => {
            ops::account::remove_device(home, id).await?;
            println!("Device {id} is removed from the list.");
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn folder(home: &Home, cmd: FolderCmd) -> Result<ExitCode> {
    let config = home.load()?;
    match cmd {
        FolderCmd::Set { name, key, value } => return crate::settings_cmd::set(home, &name, &key, &value).await,
        FolderCmd::Show { name, json } => return crate::settings_cmd::show(home, &name, json).await,
        FolderCmd::ConfirmDeletes { name } => return crate::settings_cmd::confirm_deletes(home, &name).await,
        FolderCmd::Revert { name, yes } => return crate::settings_cmd::revert(home, &name, yes).await,
        FolderCmd::Add { path, name } => {
            let f = ops::folders::add_folder(home, &path, name.as_deref(), Default::default())?;
            ops::configuration_changed(home).await;
            println!("Linked {} to server folder {:?}.", f.path.display(), f.name);
        }
        FolderCmd::List { json } => {
            if json {
                // The same view as the UI's `GET /api/folders`.
                println!("{}", serde_json::to_string_pretty(&config.folders)?);
            } else if config.folders.is_empty() {
                println!("No folders yet; add one with `filesync folder add PATH`.");
            } else {
                for f in &config.folders {
                    println!("{}\t{}", f.name, f.path.display());
                }
            }
        }
        FolderCmd::Remove { folder } => {
            let f = ops::folders::remove_folder(home, &folder).await?;
            ops::configuration_changed(home).await;
            println!("Unlinked {} ({}); its files stay here and on the server.", f.name, f.path.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn sync(home: &Home, quiet: bool, json: bool) -> Result<ExitCode> {
    let Some(local) = ops::LocalSync::start(home)? else {
        bail!("the FileSync agent is running for this home and syncs continuously; see `filesync status`");
    };
    local.connect().await?;
    let config = local.session().config().clone();
    if config.folders.is_empty() {
        println!("No folders to sync; add one with `filesync folder add PATH`.");
        return Ok(ExitCode::SUCCESS);
    }
    let show = !quiet && std::io::stderr().is_terminal();
    let mut report = ops::sync::SyncReport::default();
    let mut failed = false;
    for f in &config.folders {
        let progress = Arc::new(Progress::default());
        let bar = show.then(|| {
            let b = indicatif::ProgressBar::new(0);
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "{prefix:.bold} {msg:12} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            b.set_prefix(f.name.clone());
            b
        });
        let ticker = bar.clone().map(|b| {
            let p = progress.clone();
            tokio::spawn(async move {
                loop {
                    let s = p.snapshot();
                    b.set_length(s.bytes_total.max(1));
                    b.set_position(s.bytes_done);
                    b.set_message(format!("{} {}/{}", s.phase, s.files_done, s.files_total));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
        });
        let r = local.sync_folder(f, &progress).await;
        if let Some(t) = ticker {
            t.abort();
        }
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        failed |= ops::sync::failed(&r);
        if json {
            report.folders.push(ops::sync::FolderSyncReport::new(&f.name, &r));
            continue;
        }
        match r {
            Ok(rep) => {
                println!(
                    "{}: {} uploaded, {} downloaded, {} deleted here, {} deleted on the server, {} conflict(s); \
                     sent {}, received {}; {} files ({}) in sync",
                    f.name,
                    rep.uploaded,
                    rep.downloaded,
                    rep.deleted_local,
                    rep.deleted_remote,
                    rep.conflicts,
                    human_bytes(rep.bytes_up),
                    human_bytes(rep.bytes_down),
                    rep.files,
                    human_bytes(rep.bytes)
                );
                if let Some(p) = &rep.paused {
                    // The guard needs attention (a failure for scripts); a pause by the user does not.
                    eprintln!("  paused: {}", p.reason);
                    eprintln!("  {}", crate::status_cmd::paused_action(&f.name, config.paused, !p.by_guard));
                }
                for s in &rep.skipped {
                    println!("  skipped {}: {}", s.path, s.reason);
                }
                for e in &rep.errors {
                    eprintln!("  error {}: {}", e.path, e.reason);
                }
            }
            Err(e) => eprintln!("{}: {e}", f.name),
        }
    }
    if json {
        let (sent, received) = local.wire_stats();
        report.ok = !failed;
        report.wire = ops::sync::Wire { sent, received };
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    local.finish()?;
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

async fn run_agent(home: &Home, args: crate::ui_cmd::AgentArgs) -> Result<ExitCode> {
    crate::ui_cmd::check_agent_args(home, &args)?;
    let config = home.load()?;
    eprintln!(
        "FileSync agent: syncing {} folder(s) with {}; press Ctrl-C to stop",
        config.folders.len(),
        config.server.as_deref().unwrap_or("(no server)")
    );
    let shutdown = async {
        shutdown_signal().await;
        filesync_service::notify_stopping();
    };
    let live = filesync_agent::live::LiveStatus::default();
    let opts = AgentOptions { live: live.clone(), ..AgentOptions::default() };
    // The UI starts once this agent owns the home (a second agent for it stops before).
    let mut ui = None;
    let ready = || {
        ui = crate::ui_cmd::start_for_agent(home, live, &args);
        filesync_service::notify_ready();
    };
    agent::run_with_ready(home.clone(), opts, shutdown, ready).await?;
    drop(ui);
    Ok(ExitCode::SUCCESS)
}

/// `--store s3://…` and the `--s3-…` options as a chunk store configuration.
pub(crate) fn s3_config(args: &S3Args) -> Result<Option<filesync_store::s3::S3Config>> {
    let Some(url) = &args.store else { return Ok(None) };
    let mut s3 = filesync_store::s3::S3Config::from_url(url)
        .with_context(|| format!("--store {url:?}: give the bucket as s3://BUCKET or s3://BUCKET/PREFIX"))?;
    s3.endpoint = args.s3_endpoint.clone();
    s3.region = args.s3_region.clone();
    s3.path_style = args.s3_path_style;
    if let Some(file) = &args.s3_credentials {
        s3.credentials = Some(filesync_store::s3::S3Config::read_credentials(file).map_err(anyhow::Error::msg)?);
    }
    Ok(Some(s3))
}

/// `--database URL` and `--database-password-file FILE` as a store configuration. A password
/// in the URL wins; without either, PostgreSQL's own `PGPASSWORD` (or `~/.pgpass`) is used.
fn database_config(
    url: Option<String>,
    password_file: Option<&std::path::Path>,
) -> Result<Option<filesync_store::pg::PgConfig>> {
    let Some(url) = url else { return Ok(None) };
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        bail!(
            "--database {}: give a PostgreSQL URL, postgres://USER@HOST/DATABASE (without --database the \
             server keeps its metadata in the data directory)",
            filesync_store::pg::redact(&url)
        );
    }
    let password =
        password_file.map(filesync_store::pg::PgConfig::read_password_file).transpose().map_err(anyhow::Error::msg)?;
    Ok(Some(filesync_store::pg::PgConfig { url, password }))
}
