// The first example of the README: what a user copies first. It must compile and run as
// written against a herald on localhost:4317 (tests/quickstart.rs runs it).
use helixobs::Instrument;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let tel = Instrument::builder("my-pipeline")
        .instrument_id("MY_INST")
        .endpoint("localhost:4317") // host:port or a URL
        .process_name("MY_INST/ingest")
        .build()?;
    {
        let _block = tel.create("ingest", "block-001").start();
    } // completed when the guard drops
    {
        let token = tel.create("search", "candidate-42").parents(["block-001"]).start();
        token.set_attribute("score", 0.97);
        token.add_event("helix.event.classified", [("label", "FRB")]);
        let _filter = tel.child_span("filter");
    }
    tel.operate("archive", "candidate-42").start().complete_with([("path", "/data/candidate-42.h5")]);
    tel.shutdown()?;
    Ok(())
}
