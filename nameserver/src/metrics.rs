//! The nameserver's own metrics, served on its HTTP `/metrics` (prometheus-client).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::registry::Health;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DnsLabels {
    pub opcode: String,
    pub rcode: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InstanceLabels {
    pub service: String,
    pub state: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServiceLabels {
    pub service: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: String,
}

impl ResultLabels {
    pub fn new(result: &str) -> Self {
        Self {
            result: result.to_owned(),
        }
    }
}

/// Every metric the nameserver exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub dns_responses: Family<DnsLabels, Counter>,
    pub updates: Family<ResultLabels, Counter>,
    pub transfers: Family<ResultLabels, Counter>,
    pub notifies_sent: Family<ResultLabels, Counter>,
    pub refreshes: Family<ResultLabels, Counter>,
    pub last_refresh: Gauge,
    pub instances: Family<InstanceLabels, Gauge>,
    pub probes: Family<ServiceLabels, Counter>,
    pub probe_failures: Family<ServiceLabels, Counter>,
    pub probe_duration: Histogram,
    pub zone_serial: Gauge,
    pub zone_records: Gauge,
    pub persist_errors: Counter,
    pub udp_dropped: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("heimdall_nameserver");
        let m = Self {
            dns_responses: Family::default(),
            updates: Family::default(),
            transfers: Family::default(),
            notifies_sent: Family::default(),
            refreshes: Family::default(),
            last_refresh: Gauge::default(),
            instances: Family::default(),
            probes: Family::default(),
            probe_failures: Family::default(),
            probe_duration: Histogram::new([0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0]),
            zone_serial: Gauge::default(),
            zone_records: Gauge::default(),
            persist_errors: Counter::default(),
            udp_dropped: Counter::default(),
            registry: Registry::default(),
        };
        registry.register(
            "dns_responses",
            "DNS responses sent, by opcode and rcode",
            m.dns_responses.clone(),
        );
        registry.register(
            "dns_udp_dropped",
            "DNS/UDP requests dropped because too many were waiting for the general handler",
            m.udp_dropped.clone(),
        );
        registry.register(
            "updates",
            "RFC 2136 UPDATE requests, by result",
            m.updates.clone(),
        );
        registry.register(
            "transfers",
            "Zone transfers (AXFR/IXFR) served, by result",
            m.transfers.clone(),
        );
        registry.register(
            "notifies_sent",
            "NOTIFY messages sent to secondaries, by result",
            m.notifies_sent.clone(),
        );
        registry.register(
            "secondary_refreshes",
            "Secondary zone refreshes from the primary, by result",
            m.refreshes.clone(),
        );
        registry.register(
            "secondary_last_refresh_timestamp_seconds",
            "Unix time of the last successful refresh from the primary",
            m.last_refresh.clone(),
        );
        registry.register(
            "instances",
            "Registered instances by service and health state",
            m.instances.clone(),
        );
        registry.register(
            "health_probes",
            "Health probes sent, by service",
            m.probes.clone(),
        );
        registry.register(
            "health_probe_failures",
            "Health probes that failed (error, timeout or non-2xx), by service",
            m.probe_failures.clone(),
        );
        registry.register(
            "health_probe_duration_seconds",
            "Duration of health probes",
            m.probe_duration.clone(),
        );
        registry.register(
            "zone_serial",
            "SOA serial of the zone served",
            m.zone_serial.clone(),
        );
        registry.register(
            "zone_records",
            "Records in the zone served",
            m.zone_records.clone(),
        );
        registry.register(
            "persist_errors",
            "Registry changes that could not be written to disk",
            m.persist_errors.clone(),
        );
        Self { registry, ..m }
    }

    /// Sets the per-service instance gauges from `counts` (services gone are dropped).
    pub fn set_instances(&self, counts: &[(String, Health, usize)]) {
        self.instances.clear();
        for (service, health, n) in counts {
            let state = match health {
                Health::Up => "up",
                Health::Down => "down",
            };
            self.instances
                .get_or_create(&InstanceLabels {
                    service: service.clone(),
                    state: state.to_owned(),
                })
                .set(*n as i64);
        }
    }

    /// Counts one DNS response.
    pub fn dns_response(&self, opcode: &str, rcode: &str) {
        self.dns_response_counter(opcode, rcode).inc();
    }

    /// The counter of responses with `opcode` and `rcode`, to keep and increment directly.
    pub fn dns_response_counter(&self, opcode: &str, rcode: &str) -> Counter {
        self.dns_responses
            .get_or_create(&DnsLabels {
                opcode: opcode.to_owned(),
                rcode: rcode.to_owned(),
            })
            .clone()
    }

    /// The OpenMetrics text of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_instances_by_state() {
        let m = Metrics::new();
        m.set_instances(&[
            ("exporter".into(), Health::Up, 3),
            ("exporter".into(), Health::Down, 1),
        ]);
        m.dns_response("query", "NOERROR");
        let text = m.encode();
        assert!(
            text.contains("heimdall_nameserver_instances{service=\"exporter\",state=\"up\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("heimdall_nameserver_instances{service=\"exporter\",state=\"down\"} 1")
        );
        assert!(text.contains(
            "heimdall_nameserver_dns_responses_total{opcode=\"query\",rcode=\"NOERROR\"} 1"
        ));
        m.set_instances(&[]);
        assert!(!m.encode().contains("service=\"exporter\""));
    }
}
