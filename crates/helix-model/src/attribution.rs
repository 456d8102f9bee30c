//! Which instrument the records of an export belong to, by the same attribute rules as
//! interpretation (docs/wire.md): a span's own `helix.instrument.id`, else its resource's; a log
//! record's `helix_instrument_id`, else its resource's `helix.instrument.id`. Used when the
//! sender is known (an authenticated export): records that name no instrument are attributed
//! to the sender's, and the first record naming another instrument is reported.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;

use crate::interpret::string_attr;
use crate::keys::{log::INSTRUMENT_ID as LOG_INSTRUMENT_ID, INSTRUMENT_ID};

/// A record of the export names an instrument other than the sender's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForeignInstrument {
    /// The instrument the record names.
    pub named: String,
}

/// Attribute every span of `request` that names no instrument to `instrument` (by giving its
/// resource `helix.instrument.id = instrument`), or report the first span naming another one.
/// On `Err` the request may be partly attributed; it is to be refused whole.
pub fn attribute_traces(request: &mut ExportTraceServiceRequest, instrument: &str) -> Result<(), ForeignInstrument> {
    for resource_spans in &mut request.resource_spans {
        claim_resource(&mut resource_spans.resource, instrument)?;
        for span in resource_spans.scope_spans.iter_mut().flat_map(|s| s.spans.iter_mut()) {
            claim_attributes(&mut span.attributes, INSTRUMENT_ID, instrument)?;
        }
    }
    Ok(())
}

/// [`attribute_traces`] for a log export: the records' `helix_instrument_id`, else the resource's.
pub fn attribute_logs(request: &mut ExportLogsServiceRequest, instrument: &str) -> Result<(), ForeignInstrument> {
    for resource_logs in &mut request.resource_logs {
        claim_resource(&mut resource_logs.resource, instrument)?;
        for record in resource_logs.scope_logs.iter().flat_map(|s| s.log_records.iter()) {
            // An empty value names nothing (interpretation ignores it), so it falls back to
            // the resource, which now names `instrument`.
            match string_attr(&record.attributes, LOG_INSTRUMENT_ID) {
                Some(named) if !named.is_empty() && named != instrument => {
                    return Err(ForeignInstrument { named: named.to_owned() })
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// The resource names `instrument` afterwards, or it named another one.
fn claim_resource(resource: &mut Option<Resource>, instrument: &str) -> Result<(), ForeignInstrument> {
    let resource = resource.get_or_insert_with(Resource::default);
    match string_attr(&resource.attributes, INSTRUMENT_ID) {
        Some(named) if named == instrument => Ok(()),
        Some(named) if !named.is_empty() => Err(ForeignInstrument { named: named.to_owned() }),
        // Absent, empty or not a string: the last occurrence of a key wins, so appending
        // overrides whatever was there.
        _ => {
            resource.attributes.push(instrument_attribute(INSTRUMENT_ID, instrument));
            Ok(())
        }
    }
}

/// A span's own attribute: absent is fine (the resource decides); another instrument is not;
/// an empty string would make its records name no instrument, so it becomes `instrument`.
fn claim_attributes(attributes: &mut Vec<KeyValue>, key: &str, instrument: &str) -> Result<(), ForeignInstrument> {
    match string_attr(attributes, key) {
        None => Ok(()),
        Some(named) if named == instrument => Ok(()),
        Some(named) if !named.is_empty() => Err(ForeignInstrument { named: named.to_owned() }),
        Some(_) => {
            attributes.push(instrument_attribute(key, instrument));
            Ok(())
        }
    }
}

fn instrument_attribute(key: &str, instrument: &str) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(Value::StringValue(instrument.to_owned())) }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builders::{kv, logs, pipeline_resource, string, traces, SpanBuilder};
    use crate::interpret::{interpret_logs, interpret_traces, SpanClass};
    use opentelemetry_proto::tonic::logs::v1::LogRecord;

    fn instruments_of(request: &ExportTraceServiceRequest) -> Vec<String> {
        interpret_traces(request)
            .spans
            .into_iter()
            .map(|s| match s.class {
                SpanClass::Creation(c) => c.instrument_id.clone(),
                SpanClass::Operation(o) => o.instrument_id.clone(),
                other => panic!("not an entity span: {other:?}"),
            })
            .collect()
    }

    #[test]
    fn spans_that_name_no_instrument_become_the_senders() {
        let mut request = traces(
            vec![kv("service.name", string("svc"))],
            vec![
                SpanBuilder::creation("ingest", "a", 1).build(),
                SpanBuilder::creation("ingest", "b", 2).instrument("").build(),
                SpanBuilder::operation("archive", "c", 3).instrument("CHIME").build(),
            ],
        );
        attribute_traces(&mut request, "CHIME").expect("nothing foreign");
        assert_eq!(instruments_of(&request), ["CHIME", "CHIME", "CHIME"]);
    }

    #[test]
    fn a_resource_or_span_naming_another_instrument_is_reported() {
        let mut by_resource =
            traces(pipeline_resource("svc", "OTHER"), vec![SpanBuilder::creation("s", "a", 1).build()]);
        assert_eq!(attribute_traces(&mut by_resource, "CHIME"), Err(ForeignInstrument { named: "OTHER".into() }));
        let mut by_span = traces(
            pipeline_resource("svc", "CHIME"),
            vec![SpanBuilder::creation("s", "a", 1).build(), SpanBuilder::new("plain", 2).instrument("OTHER").build()],
        );
        assert_eq!(attribute_traces(&mut by_span, "CHIME"), Err(ForeignInstrument { named: "OTHER".into() }));
        let mut own = traces(pipeline_resource("svc", "CHIME"), vec![SpanBuilder::creation("s", "a", 1).build()]);
        let before = own.clone();
        attribute_traces(&mut own, "CHIME").expect("own instrument");
        assert_eq!(own, before, "an export already naming its instrument is left as it is");
    }

    #[test]
    fn a_resource_that_names_none_is_given_the_senders_even_over_a_non_string_value() {
        let mut request = traces(
            vec![kv("helix.instrument.id", crate::builders::int(7))],
            vec![SpanBuilder::creation("s", "a", 1).build()],
        );
        request.resource_spans.push(Default::default());
        attribute_traces(&mut request, "CHIME").expect("nothing foreign");
        assert_eq!(instruments_of(&request), ["CHIME"]);
        let resource = request.resource_spans[1].resource.as_ref().expect("a resource was added");
        assert_eq!(string_attr(&resource.attributes, INSTRUMENT_ID), Some("CHIME"));
    }

    #[test]
    fn log_records_follow_the_same_rules() {
        let record = |instrument: Option<&str>| LogRecord {
            attributes: instrument.map(|i| vec![kv(LOG_INSTRUMENT_ID, string(i))]).unwrap_or_default(),
            ..Default::default()
        };
        let mut request = logs(vec![], vec![record(None), record(Some("")), record(Some("CHIME"))]);
        attribute_logs(&mut request, "CHIME").expect("nothing foreign");
        let named: Vec<Option<String>> = interpret_logs(&request).into_iter().map(|l| l.instrument_id).collect();
        assert_eq!(named, vec![Some("CHIME".to_owned()); 3]);
        let mut foreign = logs(pipeline_resource("svc", "CHIME"), vec![record(Some("OTHER"))]);
        assert_eq!(attribute_logs(&mut foreign, "CHIME"), Err(ForeignInstrument { named: "OTHER".into() }));
        let mut foreign_resource = logs(pipeline_resource("svc", "OTHER"), vec![record(None)]);
        assert_eq!(attribute_logs(&mut foreign_resource, "CHIME"), Err(ForeignInstrument { named: "OTHER".into() }));
    }
}
