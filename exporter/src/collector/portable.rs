//! Portable collector for non-Linux hosts, through `sysinfo`: memory, load, boot time,
//! filesystems, network counters and temperatures under node_exporter's names. The reading
//! is here; the mapping to samples is in `portable_map` (compiled and tested on Linux too).

use std::sync::{Mutex, PoisonError};

use sysinfo::{Components, Disks, Networks, System};

use super::portable_map::{self, Filesystem, Host, Memory, NetDev, Temperature};
use super::{BuildError, CollectError, Collector, CollectorOptions, Paths};
use crate::exposition::Sink;

#[derive(Debug)]
struct Portable {
    /// Kept between scrapes: sysinfo refreshes in place.
    system: Mutex<Option<System>>,
}

pub fn build(_: &CollectorOptions) -> Result<Box<dyn Collector>, BuildError> {
    Ok(Box::new(Portable {
        system: Mutex::new(None),
    }))
}

impl Collector for Portable {
    fn collect(&self, _paths: &Paths, out: &mut Sink) -> Result<(), CollectError> {
        let mut host = Host::default();

        {
            let mut guard = self.system.lock().unwrap_or_else(PoisonError::into_inner);
            if guard.is_none() {
                match System::new() {
                    Ok(s) => *guard = Some(s),
                    Err(e) => tracing::debug!(error = %e, "sysinfo: system unavailable"),
                }
            }
            if let Some(sys) = guard.as_mut() {
                sys.refresh_memory();
                host.memory = Some(Memory {
                    total: sys.total_memory(),
                    available: sys.available_memory(),
                    free: sys.free_memory(),
                    swap_total: sys.total_swap(),
                    swap_free: sys.free_swap(),
                });
            }
        }
        match System::load_average() {
            Ok(l) => host.load = Some([l.one, l.five, l.fifteen]),
            Err(e) => tracing::debug!(error = %e, "sysinfo: load average unavailable"),
        }
        match System::boot_time() {
            Ok(b) => host.boot_time = Some(b),
            Err(e) => tracing::debug!(error = %e, "sysinfo: boot time unavailable"),
        }

        match Disks::new_with_refreshed_list() {
            Ok(disks) => {
                for d in disks.iter() {
                    host.filesystems.push(Filesystem {
                        device: d.name().to_string_lossy().into_owned(),
                        fstype: d.file_system().to_string_lossy().into_owned(),
                        mountpoint: d.mount_point().to_string_lossy().into_owned(),
                        size: d.total_space(),
                        avail: d.available_space(),
                    });
                }
            }
            Err(e) => tracing::debug!(error = %e, "sysinfo: disks unavailable"),
        }

        match Networks::new_with_refreshed_list() {
            Ok(nets) => {
                for (name, data) in nets.iter() {
                    host.netdevs.push(NetDev {
                        device: name.to_string_lossy().into_owned(),
                        receive_bytes: data.total_received(),
                        transmit_bytes: data.total_transmitted(),
                        receive_packets: data.total_packets_received(),
                        transmit_packets: data.total_packets_transmitted(),
                        receive_errs: data.total_errors_on_received(),
                        transmit_errs: data.total_errors_on_transmitted(),
                    });
                }
            }
            Err(e) => tracing::debug!(error = %e, "sysinfo: networks unavailable"),
        }

        match Components::new_with_refreshed_list() {
            Ok(components) => {
                for c in components.iter() {
                    if let Some(t) = c.temperature() {
                        host.temperatures.push(Temperature {
                            label: c.label().to_string(),
                            celsius: f64::from(t),
                        });
                    }
                }
            }
            Err(e) => tracing::debug!(error = %e, "sysinfo: components unavailable"),
        }

        if host == Host::default() {
            return Err(CollectError::NoData);
        }
        portable_map::emit(&host, out);
        Ok(())
    }
}
