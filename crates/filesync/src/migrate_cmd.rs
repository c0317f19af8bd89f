//! `filesync server migrate`: moves a single-machine server (its data directory's SQLite
//! metadata and chunk directory) to PostgreSQL and, if asked, its chunks to an S3 bucket or
//! another directory, through `filesync_store::copy`, and says what to do next.

use anyhow::{Context, Result, bail};
use filesync_store::ChunkStore;
use filesync_store::pg::PgConfig;
use filesync_store::s3::S3Config;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub async fn run(from: &Path, database: PgConfig, s3: Option<S3Config>, chunks: Option<PathBuf>) -> Result<ExitCode> {
    if !from.join("meta.db").is_file() {
        bail!(
            "{} holds no server database (meta.db): give --from the data directory of the server to move",
            from.display()
        );
    }
    let source = filesync_store::open_sqlite(from).await.context("cannot open the server's database")?;
    let source_chunks = filesync_store::open_local_chunks(from)?;
    let dest = database.connect().await?;
    let same_dir = |d: &Path| {
        let canon = |p: &Path| std::fs::canonicalize(p).ok();
        canon(d).is_some() && canon(d) == canon(&from.join("chunks"))
    };
    let (dest_chunks, chunks_shown): (Option<Box<dyn ChunkStore>>, String) = match (&s3, chunks) {
        (Some(s3), _) => {
            (Some(Box::new(filesync_store::s3::S3Chunks::open(s3).await?)), format!("s3://{}/{}", s3.bucket, s3.prefix))
        }
        (None, Some(dir)) if !same_dir(&dir) => {
            (Some(Box::new(filesync_store::localfs::LocalChunks::open(&dir)?)), dir.display().to_string())
        }
        _ => (None, format!("{} (left where they are)", from.join("chunks").display())),
    };
    eprintln!(
        "copying the server in {} to PostgreSQL at {}; chunks: {chunks_shown}",
        from.display(),
        database.display_url()
    );
    let report = filesync_store::copy::copy_server(&source, &source_chunks, &dest, dest_chunks.as_deref(), &|line| {
        eprintln!("  {line}")
    })
    .await
    .context("the migration did not complete; fix what is said above and run the same command again")?;
    dest.close().await;
    source.close().await;
    if report.already_copied {
        println!("Already migrated: PostgreSQL holds exactly this server's data; nothing was changed.");
    } else {
        println!("Migrated and verified:");
    }
    for (table, rows) in &report.tables {
        println!("  {table}: {rows} row(s)");
    }
    println!("  chunks: {} copied, {} read back and verified", report.chunks_copied, report.chunks_verified);
    if !report.chunks_unreadable.is_empty() {
        println!(
            "  {} chunk(s) were damaged or missing in {} and were left out; the devices that hold those \
             files upload them again",
            report.chunks_unreadable.len(),
            from.join("chunks").display()
        );
    }
    println!();
    println!("Next: start the server on the new stores, with the same certificate so that devices keep");
    println!("trusting it (cert.pem and key.pem in {}):", from.display());
    let store = match &s3 {
        Some(s3) => format!(" --store s3://{}/{} …", s3.bucket, s3.prefix),
        None => String::new(),
    };
    println!("  filesync server --data {} --database {}{store}", from.display(), database.display_url());
    println!("For another machine or several instances, copy cert.pem and key.pem into each one's --data");
    println!("directory (see docs/deploy.md). Devices keep their logins.");
    Ok(ExitCode::SUCCESS)
}
