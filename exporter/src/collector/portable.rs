//! Portable collectors for non-Linux hosts, through `sysinfo`. TO BE WRITTEN.
