//! The beamformer stage of the simulated telescope, written in Rust: it forms beams from raw
//! voltages and emits one data block per beam and interval, tracked with helixobs. Each
//! finished block's ID goes to stdout, one per line — the hand-off to the next stage (the
//! Python `search_stage.py` reads them and creates candidates whose parents are these blocks).
//!
//!     beamformer --endpoint localhost:4317 --beams 2 --blocks 5 | python search_stage.py --endpoint localhost:4317

use std::io::Write;
use std::time::Duration;

use clap::Parser;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

#[derive(Parser, Debug)]
#[command(about = "Simulated telescope: the Rust beamformer stage")]
struct Args {
    /// OTLP endpoint of the herald (host:port or a URL).
    #[arg(long, default_value = "localhost:4317")]
    endpoint: String,
    /// Number of beams formed.
    #[arg(long, default_value_t = 2)]
    beams: u32,
    /// Blocks per beam (then the stage stops).
    #[arg(long, default_value_t = 5)]
    blocks: u32,
    /// Seconds between blocks of one beam.
    #[arg(long, default_value_t = 0.05)]
    interval: f64,
    /// Run ID in the block IDs, so several runs can share one herald.
    #[arg(long, default_value = "run")]
    run: String,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let tel = helixobs::Instrument::builder("telescope.beamformer")
        .instrument_id("TELESCOPE")
        .endpoint(&args.endpoint)
        .process_name("TELESCOPE/realtime/beamformer")
        .build()?;
    // Log lines go to the herald too, each with the block it was written for.
    tracing_subscriber::registry().with(tel.tracing_layer()).init();
    let stdout = std::io::stdout();
    for seq in 1..=args.blocks {
        for beam in 0..args.beams {
            let id = format!("blk-{}-b{beam}-{seq:06}", args.run);
            let block = tel.create("beamform", &id).start();
            block.set_attribute("beam", beam);
            block.set_attribute("n_channels", 16384);
            block.set_attribute("freq_min_mhz", 400.0);
            block.set_attribute("freq_max_mhz", 800.0);
            {
                let _channelize = tel.child_span("channelize");
                std::thread::sleep(Duration::from_millis(1));
            }
            {
                let weights = tel.child_span("apply-weights");
                weights.set_attribute("n_antennas", 256);
            }
            tracing::info!(beam, "formed block {id}");
            block.complete();
            // Hand the block on once its step has ended (the herald links the parent whichever
            // of the two spans reaches it first).
            writeln!(stdout.lock(), "{id}")?;
        }
        std::thread::sleep(Duration::from_secs_f64(args.interval));
    }
    tel.shutdown()?;
    Ok(())
}
