//! Command-line syntax (clap derive). Every subcommand is documented here; `--help` shows it.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "filesync",
    version,
    about = "Keep folders identical across your computers, through a server you run."
)]
pub struct Cli {
    /// Client configuration and state directory (lets several clients run on one machine).
    #[arg(long, global = true, env = "FILESYNC_HOME")]
    pub home: Option<PathBuf>,
    /// More log output (-v, -vv). FILESYNC_LOG overrides with a tracing filter.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the FileSync server (embedded SQLite + local disk by default).
    Server(Box<ServerArgs>),
    /// Create an account on a server, then log this computer in.
    Register(LoginArgs),
    /// Log this computer in to a server; it gets a device token.
    Login(LoginArgs),
    /// Log this computer in again after its access was revoked: asks only for the password and
    /// keeps the server, its certificate, this computer's name, its device entry and its folders.
    LoginAgain {
        /// Read the password from the first line of standard input (for scripts).
        #[arg(long)]
        password_stdin: bool,
    },
    /// Revoke this computer's token on the server and forget it here.
    Logout {
        /// Forget the token locally even if the server cannot be reached.
        #[arg(long)]
        force: bool,
    },
    /// List, rename, revoke or remove this account's computers.
    #[command(subcommand)]
    Devices(DevicesCmd),
    /// Link local folders to server folders.
    #[command(subcommand)]
    Folder(FolderCmd),
    /// One full sync pass over every folder, then exit.
    Sync {
        /// No progress bar.
        #[arg(long, short)]
        quiet: bool,
        /// Print a JSON report instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Run in the foreground and keep every folder in sync continuously; serves the web UI.
    Agent(crate::ui_cmd::AgentArgs),
    /// Open the web UI in the browser (the running agent serves it), or print its URL.
    Ui(crate::ui_cmd::UiArgs),
    /// Change this account's password, and choose whether your other computers stay logged in.
    Password {
        /// Read the current and the new password from the first two lines of standard input.
        #[arg(long)]
        password_stdin: bool,
        /// Also log out every other computer of this account (each must log in again with
        /// the new password). Without this or --keep-other-devices, a terminal asks.
        #[arg(long, conflicts_with = "keep_other_devices")]
        log_out_other_devices: bool,
        /// Keep every other computer logged in, without asking.
        #[arg(long)]
        keep_other_devices: bool,
    },
    /// List conflict copies, or resolve one (`conflicts resolve PATH --keep mine|theirs|both`).
    Conflicts {
        #[command(subcommand)]
        cmd: Option<crate::conflicts_cmd::ConflictsCmd>,
    },
    /// Show each folder's state: in sync, or what it waits for.
    Status {
        #[arg(long)]
        json: bool,
        /// Wait until every folder is in sync, then exit 0 (1 on an error or the timeout, 2 if
        /// the agent is not running). For scripts.
        #[arg(long)]
        wait: bool,
        /// With --wait: give up after this many seconds.
        #[arg(long, requires = "wait", value_name = "SECONDS")]
        timeout: Option<f64>,
    },
    /// Pause syncing a folder, or every folder without a name.
    Pause { name: Option<String> },
    /// Resume a paused folder, or every folder without a name.
    Resume { name: Option<String> },
    /// Run the agent as a background service (Windows service, systemd unit).
    #[command(subcommand)]
    Service(crate::service_cmd::ServiceCmd),
    /// List the versions the server keeps of a file, newest first.
    History {
        /// A file (or folder) inside a linked folder, absolute or relative to the current directory.
        path: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Bring back an older version of a file, on every computer.
    Restore {
        /// A file inside a linked folder (it may be deleted).
        path: PathBuf,
        /// The version to bring back: its number in `filesync history` (1 = the newest).
        /// Default: undo the last change, or the last version before a deletion.
        #[arg(long, value_name = "N")]
        version: Option<usize>,
        /// Restore under this name instead, in the same folder (it must not exist).
        #[arg(long, value_name = "NEWPATH")]
        to: Option<PathBuf>,
    },
    /// Deleted files the server keeps for the retention period: list them, restore one.
    #[command(subcommand)]
    Trash(crate::history_cmd::TrashCmd),
    /// How much this account stores on the server: current files, version history, chunks.
    Usage {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ServerArgs {
    #[command(subcommand)]
    pub command: Option<ServerCmd>,
    /// Data directory (database, chunks, TLS certificate). Default: the platform data dir.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Address and port to listen on.
    #[arg(long, default_value = "0.0.0.0:7443")]
    pub listen: String,
    /// Who may create an account: anyone who can reach the server (open), nobody (closed:
    /// `filesync server admin create-user` makes accounts), or whoever has an invite code
    /// (invite: `filesync server admin invite`). Default: open on a loopback address; on any
    /// other address the server refuses to start until you choose.
    #[arg(long, value_enum)]
    pub registration: Option<Registration>,
    /// Storage quota of new accounts made by registration, e.g. 10G, 500M (default:
    /// unlimited). `filesync server admin quota` changes one account's.
    #[arg(long, value_name = "SIZE", value_parser = crate::admin_cmd::parse_quota)]
    pub default_quota: Option<Quota>,
    /// PEM certificate (chain) to use instead of the generated self-signed one.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Days an overwritten or deleted file version is kept (all versions for a day, then one
    /// per hour for a week, then one per day), after which it and its unused data are deleted.
    #[arg(long, value_name = "N", default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=36500))]
    pub retention_days: u32,
    /// Devices that may be connected at once. [default: 4096]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: Option<u32>,
    /// Connections one IP address (for IPv6, one /64 network) may hold, authenticated or not;
    /// more are closed as soon as they are accepted. [default: 128]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections_per_address: Option<u32>,
    /// Connections that may be authenticating at once (each has 30 seconds); more are closed
    /// as soon as they are accepted, and connected devices keep their slots. [default: 512]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_unauthenticated: Option<u32>,
    /// Memory for requests and replies in transit, server-wide, in MiB; requests wait beyond
    /// it. [default: 512]
    #[arg(long, value_name = "MIB", value_parser = clap::value_parser!(u32).range(16..))]
    pub buffer_memory: Option<u32>,
    /// The same, for all connections of one address, in MiB. [default: 64]
    #[arg(long, value_name = "MIB", value_parser = clap::value_parser!(u32).range(16..))]
    pub buffer_memory_per_address: Option<u32>,
    /// Run history pruning and chunk garbage collection this often, in seconds, the first run
    /// that long after start (default: a minute after start, then hourly). For soak tests that
    /// want maintenance to run beside syncs.
    #[arg(long, value_name = "SECS", hide = true, value_parser = clap::value_parser!(u64).range(1..))]
    pub maintenance_every: Option<u64>,
    /// Keep every overwritten or deleted version this many seconds, then delete it (instead of
    /// --retention-days). For soak tests that want pruning to delete beside syncs.
    #[arg(long, value_name = "SECS", hide = true, value_parser = clap::value_parser!(u32).range(1..))]
    pub retention_secs: Option<u32>,
    /// Collect unused chunks this many seconds after they arrived (default: a day). Shorter
    /// than an upload takes, its commit fails and the client sends them again: for soak tests.
    #[arg(long, value_name = "SECS", hide = true, value_parser = clap::value_parser!(u64).range(1..))]
    pub gc_grace_secs: Option<u64>,
    #[command(flatten)]
    pub s3: S3Args,
    /// Keep metadata (accounts, devices, folders, history) in PostgreSQL instead of
    /// DATA/meta.db, so that several server instances can share it:
    /// postgres://USER@HOST[:PORT]/DATABASE; add ?sslmode=require (or verify-full) for TLS.
    /// Password: in the URL, --database-password-file, or PGPASSWORD.
    #[arg(long, value_name = "URL")]
    pub database: Option<String>,
    /// A file whose first line is the PostgreSQL password.
    #[arg(long, value_name = "FILE", requires = "database")]
    pub database_password_file: Option<PathBuf>,
}

/// Where chunks go in an S3-compatible bucket (`filesync server`, `filesync server migrate`).
#[derive(Args, Debug, Default)]
pub struct S3Args {
    /// Keep file contents (chunks) in an S3-compatible bucket instead of DATA/chunks:
    /// s3://BUCKET or s3://BUCKET/PREFIX. Credentials: AWS_ACCESS_KEY_ID and
    /// AWS_SECRET_ACCESS_KEY, or --s3-credentials.
    #[arg(long, value_name = "URL")]
    pub store: Option<String>,
    /// The S3 service's URL, for anything but AWS (MinIO, Garage, Ceph…): http(s)://HOST:PORT.
    #[arg(long, value_name = "URL", requires = "store")]
    pub s3_endpoint: Option<String>,
    /// The bucket's region. [default: AWS_DEFAULT_REGION, or us-east-1]
    #[arg(long, value_name = "REGION", requires = "store")]
    pub s3_region: Option<String>,
    /// Address the bucket as ENDPOINT/BUCKET (most self-hosted services) rather than
    /// BUCKET.ENDPOINT.
    #[arg(long, requires = "store")]
    pub s3_path_style: bool,
    /// An AWS shared-credentials file ([default] aws_access_key_id, aws_secret_access_key).
    #[arg(long, value_name = "FILE", requires = "store")]
    pub s3_credentials: Option<PathBuf>,
}

/// `filesync server migrate`.
#[derive(Args, Debug)]
pub struct MigrateArgs {
    /// The data directory of the server to move (its meta.db, chunks/ and certificate). Stop
    /// that server first.
    #[arg(long, value_name = "DIR")]
    pub from: PathBuf,
    /// The PostgreSQL database to copy the metadata into (as for `filesync server --database`):
    /// an empty database, or one an earlier `migrate` of the same server filled.
    #[arg(long, value_name = "URL")]
    pub database: String,
    /// A file whose first line is the PostgreSQL password.
    #[arg(long, value_name = "FILE")]
    pub database_password_file: Option<PathBuf>,
    #[command(flatten)]
    pub s3: S3Args,
    /// Copy the chunks into this directory (the new server's DATA/chunks) instead of a bucket.
    /// Without --store or --chunks the chunks stay in DIR/chunks, for a server started with
    /// --data DIR.
    #[arg(long, value_name = "DIR", conflicts_with = "store")]
    pub chunks: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum ServerCmd {
    /// Print the server certificate's fingerprint (creating the certificate if needed).
    Fingerprint {
        #[arg(long)]
        data: Option<PathBuf>,
        #[arg(long, requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<PathBuf>,
    },
    /// Manage accounts on this machine's server: users, quotas, devices, invite codes. Works
    /// on the data directory, with or without the server running (a running server acts on a
    /// change within a second).
    Admin(AdminArgs),
    /// Move this machine's server (DATA/meta.db and DATA/chunks) to PostgreSQL, and its chunks to
    /// an S3 bucket or another directory; then verify the copy (rows and their hashes, every
    /// chunk read back). Devices keep their logins. Safe to run again.
    Migrate(MigrateArgs),
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Registration {
    Open,
    Closed,
    Invite,
}

/// A storage quota: bytes, or none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quota(pub Option<u64>);

#[derive(Args, Debug)]
pub struct AdminArgs {
    /// The server's data directory. Default: the platform data dir.
    #[arg(long, global = true)]
    pub data: Option<PathBuf>,
    /// The server's PostgreSQL database, when it keeps its metadata there (as given to
    /// `filesync server --database`).
    #[arg(long, value_name = "URL", global = true)]
    pub database: Option<String>,
    /// A file whose first line is the PostgreSQL password.
    #[arg(long, value_name = "FILE", global = true, requires = "database")]
    pub database_password_file: Option<PathBuf>,
    #[command(subcommand)]
    pub command: AdminCmd,
}

#[derive(Subcommand, Debug)]
pub enum AdminCmd {
    /// Every user: devices (not revoked), storage used, quota, disabled.
    Users {
        #[arg(long)]
        json: bool,
    },
    /// Create a user (the password is asked twice, or read from standard input).
    CreateUser {
        name: String,
        #[arg(long)]
        password_stdin: bool,
        /// Storage quota, e.g. 10G (default: unlimited).
        #[arg(long, value_name = "SIZE", value_parser = crate::admin_cmd::parse_quota)]
        quota: Option<Quota>,
    },
    /// Disable a user: every connection of theirs closes, and they cannot log in until enabled.
    Disable { name: String },
    /// Enable a disabled user again; their devices reconnect by themselves.
    Enable { name: String },
    /// Set a user's storage quota: a size such as 10G or 500M, or `unlimited`.
    Quota {
        name: String,
        #[arg(value_parser = crate::admin_cmd::parse_quota)]
        size: Quota,
    },
    /// Give a user a new password.
    ResetPassword {
        name: String,
        #[arg(long)]
        password_stdin: bool,
        /// Also log out every device of the user (each must log in again).
        #[arg(long)]
        log_out_devices: bool,
    },
    /// A user's devices: ID, name, last seen, revoked.
    Devices {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Revoke one device of a user: its token stops working and its connection closes.
    RevokeDevice { name: String, id: u64 },
    /// Print a one-time invite code for `filesync register --invite CODE`.
    Invite {
        /// How long the code stays valid, in days.
        #[arg(long, value_name = "DAYS", default_value_t = 7, value_parser = clap::value_parser!(u32).range(1..=365))]
        days: u32,
    },
}

#[derive(Args, Debug)]
pub struct LoginArgs {
    /// Server address: HOST or HOST:PORT (the port defaults to 7443); a pasted https:// URL works too.
    #[arg(long)]
    pub server: String,
    #[arg(long)]
    pub user: String,
    /// Read the password from the first line of standard input (for scripts).
    #[arg(long)]
    pub password_stdin: bool,
    /// Name of this computer as other devices see it. Default: the host name.
    #[arg(long)]
    pub device_name: Option<String>,
    /// The server certificate's fingerprint (SHA256:…), required when not asked interactively.
    #[arg(long)]
    pub fingerprint: Option<String>,
    /// `register` on a server that accepts new accounts by invite: the code its operator gave you.
    #[arg(long, value_name = "CODE")]
    pub invite: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum DevicesCmd {
    /// One line per device: ID, name, last seen.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Revoke a device: its token stops working at once.
    Revoke { id: u64 },
    /// Remove a revoked device from the list (it can still log in again later).
    Remove { id: u64 },
    /// Give a device a new name (the name other computers see).
    Rename { id: u64, name: String },
}

#[derive(Subcommand, Debug)]
pub enum FolderCmd {
    /// Link a local folder to a server folder (created on first use).
    Add {
        path: PathBuf,
        /// Server-side name; computers adding the same name sync together. Default: the folder's name.
        #[arg(long)]
        name: Option<String>,
    },
    /// The linked folders.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Unlink a folder (by name or path). Files stay where they are, here and on the server.
    Remove { folder: String },
    /// Change a setting of a folder on this computer. Keys: direction, schedule, rescan,
    /// exclude, include, upload-limit, download-limit, guard-percent, guard-min-files
    /// (see the README's "Folder settings").
    Set { name: String, key: String, value: String },
    /// Show a folder's settings and whether it is paused.
    Show {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Let the next sync propagate the deletions the mass-delete guard held back.
    ConfirmDeletes { name: String },
    /// One-way folders: make the other side equal to this one (upload-only: the server takes
    /// this computer's state; download-only: this computer takes the server's, replacing
    /// local edits). Asks first.
    Revert {
        name: String,
        /// Do not ask (for scripts).
        #[arg(long)]
        yes: bool,
    },
}
