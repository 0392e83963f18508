//! Health checks: on an interval, `GET http://<address>:<port><health_path>` for every
//! instance that has a health path, with a timeout and bounded concurrency. After
//! `failures` consecutive failures an instance is marked down (left out of SRV answers,
//! still listed in the HTTP API); after `successes` consecutive successes it is up again.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::metrics::ServiceLabels;
use crate::store::Store;

/// Health-check settings.
#[derive(Debug, Clone)]
pub struct HealthConfig {
    /// Time between rounds; zero disables checking.
    pub interval: Duration,
    pub timeout: Duration,
    /// Probes in flight at once.
    pub concurrency: usize,
    pub failures: u32,
    pub successes: u32,
}

struct Target {
    service: String,
    instance: String,
    url: String,
}

/// Probes every instance each `interval` until `shutdown`.
pub async fn run(store: Arc<Store>, config: HealthConfig, shutdown: CancellationToken) {
    if config.interval.is_zero() {
        return;
    }
    let client = match reqwest::Client::builder()
        .timeout(config.timeout)
        .connect_timeout(config.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(1)
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot create the health-check client; health checks are off");
            return;
        }
    };
    let mut tick = tokio::time::interval(config.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let targets = store
            .read(|r| {
                r.services()
                    .iter()
                    .flat_map(|(service, instances)| {
                        instances.iter().filter_map(move |(name, i)| {
                            let path = i.health_path.as_deref()?;
                            let addr = SocketAddr::new(i.address, i.port);
                            Some(Target {
                                service: service.clone(),
                                instance: name.clone(),
                                url: format!("http://{addr}{path}"),
                            })
                        })
                    })
                    .collect::<Vec<_>>()
            })
            .await;
        if targets.is_empty() {
            continue;
        }
        let metrics = store.metrics().clone();
        let probes = futures_util::stream::iter(targets.into_iter().map(|t| {
            let (client, metrics) = (client.clone(), metrics.clone());
            async move {
                let start = Instant::now();
                let ok =
                    matches!(client.get(&t.url).send().await, Ok(r) if r.status().is_success());
                metrics
                    .probe_duration
                    .observe(start.elapsed().as_secs_f64());
                let labels = ServiceLabels {
                    service: t.service.clone(),
                };
                metrics.probes.get_or_create(&labels).inc();
                if !ok {
                    metrics.probe_failures.get_or_create(&labels).inc();
                    tracing::debug!(url = t.url, "health probe failed");
                }
                (t.service, t.instance, ok)
            }
        }))
        .buffer_unordered(config.concurrency.max(1));
        let results: Vec<(String, String, bool)> = tokio::select! {
            () = shutdown.cancelled() => return,
            r = probes.collect() => r,
        };
        store
            .record_probes(&results, config.failures, config.successes)
            .await;
    }
}
