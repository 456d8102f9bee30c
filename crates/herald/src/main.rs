//! `herald` command line: parse flags, install logging, bind, run until Ctrl-C / SIGTERM.

use std::io::IsTerminal;
use std::time::Duration;

use clap::Parser;
use herald::config::{parse_db_url, Cli, Command, ServeArgs, TokenCommand};
use herald::server::{migrate_store, run, Listeners};
use tokio_util::sync::CancellationToken;

// Ingest allocates many small strings per span; mimalloc halves the time glibc's malloc takes.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How often the herald hands freed memory back to the kernel.
const GIVE_BACK_EVERY: Duration = Duration::from_secs(5);

/// mimalloc purges freed pages only when some thread allocates or collects; after a burst of
/// large reads every thread may sit idle and the pages stay resident for good. A forced
/// collection purges them; it walks only the calling thread's pages and the arenas, so on a
/// busy herald it is well under a millisecond every few seconds.
fn give_memory_back() {
    // SAFETY: `mi_collect` takes no pointers and may be called from any thread at any time.
    unsafe { libmimalloc_sys::mi_collect(true) }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // A blocking thread (a store read) that ends gives its own pages back first.
        .on_thread_stop(give_memory_back)
        .build()?;
    runtime.spawn(async {
        let mut tick = tokio::time::interval(GIVE_BACK_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            give_memory_back();
        }
    });
    let result = match cli.command {
        None => runtime.block_on(serve(cli.serve)),
        Some(Command::Serve(args)) => runtime.block_on(serve(args)),
        Some(Command::Migrate { db_url }) => {
            install_tracing("text");
            let shown = parse_db_url(&db_url).map_err(anyhow::Error::msg)?.shown();
            let applied = runtime.block_on(migrate_store(&db_url))?;
            if applied.is_empty() {
                println!("{shown}: schema already current");
            } else {
                println!("{shown}: applied migrations {applied:?}");
            }
            Ok(())
        }
        Some(Command::Demo { serve: args, rate, duration }) => runtime.block_on(demo(args, rate, duration)),
        Some(Command::CheckConfig { instruments_dir, jwt_secret }) => {
            let (report, errors) = herald::instruments::check_config(&instruments_dir, jwt_secret.as_deref());
            print!("{report}");
            if errors > 0 {
                eprintln!("herald check-config: {errors} error(s); nothing was changed");
                std::process::exit(1);
            }
            Ok(())
        }
        Some(Command::Token(TokenCommand::Issue { read: _, name, ttl, jwt_secret })) => {
            let token =
                herald::auth::issue_read_token(jwt_secret.as_deref(), &name, ttl).map_err(anyhow::Error::msg)?;
            println!("{token}");
            Ok(())
        }
    };
    // `run` has already bounded every stage; a blocking task it aborted (a store close stuck
    // in the kernel, say) must not hold the exit forever.
    runtime.shutdown_timeout(Duration::from_secs(5));
    result
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    install_tracing(&args.log_format);
    let listeners = Listeners::bind(&args).await?;
    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    run(args, listeners, shutdown).await?;
    Ok(())
}

/// Serve and feed the simulated telescope over loopback: on the store `--db-url` / `DB_URL`
/// names (the data stays there), else on a temporary one deleted on exit.
async fn demo(mut args: ServeArgs, rate: u32, duration: Option<Duration>) -> anyhow::Result<()> {
    install_tracing(&args.log_format);
    // Held until the end of the demo: dropping it deletes the temporary store.
    let mut temporary = None;
    if args.db_url.is_none() {
        let dir = tempfile::Builder::new().prefix("herald-demo-").tempdir()?;
        args.db_url = Some(format!("sqlite://{}", dir.path().join("herald.db").display()));
        temporary = Some(dir);
    }
    let listeners = Listeners::bind(&args).await?;
    let grpc_port = listeners.grpc.local_addr()?.port();
    let api = listeners.api.local_addr()?;
    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    if let Some(d) = duration {
        let s = shutdown.clone();
        tokio::spawn(async move {
            tokio::time::sleep(d).await;
            s.cancel();
        });
    }
    let kept = temporary.is_none().then(|| parse_db_url(args.db_url()).map(|l| l.shown()).unwrap_or_default());
    let server = tokio::spawn(run(args, listeners, shutdown.clone()));
    let driver =
        tokio::spawn(herald::simulate::drive(format!("http://127.0.0.1:{grpc_port}"), 4, rate, shutdown.clone()));
    let base = format!("http://localhost:{}", api.port());
    println!("herald demo: a simulated telescope ({}) is sending about {rate} spans/s", herald::simulate::INSTRUMENT);
    println!("herald demo: open {base}/ or try:");
    println!("  {base}/api/v1/instruments");
    println!("  {base}/api/v1/entities?instrument={}&limit=5", herald::simulate::INSTRUMENT);
    println!("  {base}/api/v1/entity/evt-0000001/graph");
    println!("  {base}/api/v1/entity/evt-0000001/lineage?direction=ancestors");
    match &kept {
        Some(store) => println!("herald demo: Ctrl-C to stop (the data stays in {store})"),
        None => println!("herald demo: Ctrl-C to stop (the demo store is deleted on exit)"),
    }
    match driver.await? {
        Ok(sent) => tracing::info!(sent, "simulated telescope stopped"),
        Err(e) => {
            tracing::error!(error = %e, "simulated telescope could not connect");
            shutdown.cancel();
        }
    }
    server.await??;
    drop(temporary);
    Ok(())
}

/// The herald's own logs on stderr; colour only when a person is watching it on a terminal
/// (files, pipes and journald get plain text).
fn install_tracing(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let colour = format != "json" && std::io::stderr().is_terminal();
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(colour);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Ctrl-C or SIGTERM starts the staged shutdown.
async fn stop_on_signal(shutdown: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing a SIGTERM handler only fails if signals are unsupported");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("stop requested");
    shutdown.cancel();
}
