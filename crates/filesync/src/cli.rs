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
    Server(ServerArgs),
    /// Create an account on a server, then log this computer in.
    Register(LoginArgs),
    /// Log this computer in to a server; it gets a device token.
    Login(LoginArgs),
    /// Revoke this computer's token on the server and forget it here.
    Logout {
        /// Forget the token locally even if the server cannot be reached.
        #[arg(long)]
        force: bool,
    },
    /// List or revoke this account's computers.
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
    /// Run in the foreground and keep every folder in sync continuously.
    Agent,
    /// List conflict copies, or resolve one (`conflicts resolve PATH --keep mine|theirs|both`).
    Conflicts {
        #[command(subcommand)]
        cmd: Option<crate::conflicts_cmd::ConflictsCmd>,
    },
    /// Show each folder's state.
    Status {
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
    /// Whether anyone who can reach the server may create an account.
    #[arg(long, value_enum, default_value_t = Registration::Open)]
    pub registration: Registration,
    /// PEM certificate (chain) to use instead of the generated self-signed one.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
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
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Registration {
    Open,
    Closed,
}

#[derive(Args, Debug)]
pub struct LoginArgs {
    /// Server address, HOST:PORT.
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
}
