//! Runs the real `lb` binary (`lb run`) inside a namespace and talks to it with the real CLI
//! (`lb status`, `lb backend ...`, `lb reload`, ...).

use std::{path::{Path, PathBuf}, time::{Duration, Instant}};

use anyhow::{Context, Result, bail};

use lb::dataplane::PIN_ROOT;

use crate::{child::ChildGuard, mount_ns::MountNs, names, netns::{Netns, wait_xdp_detached_in, xdp_attached_in}};

/// The `lb` binary cargo built next to this test executable.
pub fn lb_binary() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    // Tests live in target/<profile>/deps/, binaries such as lb-demo in target/<profile>/.
    let dir = exe.parent().context("executable has no directory")?;
    let dir = if dir.ends_with("deps") { dir.parent().context("no target dir")? } else { dir };
    let lb = dir.join("lb");
    if !lb.exists() {
        bail!("{} not built: use `cargo xtask test` / `cargo xtask demo`, which build it", lb.display());
    }
    Ok(lb)
}

/// The `lb` built with the `upgrade-test` feature (a program that differs from `lb_binary`'s
/// in code only, same map layouts), which `cargo xtask test` leaves in target/upgrade-test.
pub fn upgrade_binary() -> Result<PathBuf> {
    let debug = lb_binary()?;
    let target = debug.parent().and_then(Path::parent).context("lb is not in target/<profile>")?;
    let lb = target.join("upgrade-test").join("lb");
    if !lb.exists() {
        bail!(
            "{} not built: `cargo xtask test` builds it (or: cargo build -p lb-userspace --bin lb --features upgrade-test \
             && cp target/debug/lb target/upgrade-test/lb, then cargo build --workspace)",
            lb.display()
        );
    }
    Ok(lb)
}

/// A namespace with a veth pair per name in `ifaces` (`ifaces[i]` <-> `peer<i>`), up and
/// forwarding IPv4: the smallest host `lb run` attaches to.
pub fn lb_host(tag: &str, ifaces: &[&str]) -> Result<Netns> {
    let ns = Netns::new(tag)?;
    for (i, iface) in ifaces.iter().enumerate() {
        let peer = format!("peer{i}");
        ns.ip(&["link", "add", iface, "type", "veth", "peer", "name", &peer])?;
        ns.ip(&["link", "set", iface, "up"])?;
        ns.ip(&["link", "set", &peer, "up"])?;
        ns.sysctl(&format!("net.ipv4.conf.{iface}.forwarding"), "1")?;
    }
    Ok(ns)
}

/// A running `lb run`; Drop kills it (the namespace's deletion would too).
///
/// Started with `start`/`start_with`, lb has a mount namespace of its own (`ip netns exec`
/// makes one): its bpffs, pins and pinned XDP links go with it when it exits, so the data plane
/// ends with lb. Started with `start_in` a `MountNs`, its pins outlive it as on a host: the data
/// plane keeps forwarding after lb exits, the next `start_in` of the instance adopts it, and
/// `detach` (or the MountNs's end, also on failure) removes it.
pub struct LbDaemon {
    pub process: ChildGuard,
    pub socket: PathBuf,
    /// `--instance`: the pins are under /sys/fs/bpf/lb/<instance> in lb's mount namespace.
    pub instance: String,
    config: PathBuf,
    /// `--state-dir` of this daemon, when the test did not give one: removed on drop.
    own_state_dir: Option<PathBuf>,
    ns_name: String,
    ifaces: Vec<String>,
    /// Runs in a `MountNs` shared with other lbs: its data plane outlives it.
    shared_mounts: bool,
}

impl LbDaemon {
    /// Writes `config` to a temporary file and starts `lb run` in `ns` on `ifaces`.
    pub fn start(ns: &Netns, config: &str, ifaces: &[&str]) -> Result<LbDaemon> {
        Self::start_with(ns, config, ifaces, &[])
    }

    /// `start` with more `lb run` options, e.g. `["--metrics-listen", "10.200.2.1:9100"]`.
    /// Each daemon gets a unique `--instance` unless `options` name one.
    pub fn start_with(ns: &Netns, config: &str, ifaces: &[&str], options: &[&str]) -> Result<LbDaemon> {
        Self::start_by(ns, config, ifaces, options, |args| ns.spawn(args))
    }

    /// The daemon's instance started again (same config, instance, state directory and mount
    /// namespace): it adopts the data plane this one left, as `lb run` after a restart.
    /// `options` are added. The state directory this helper chose passes to the new daemon.
    pub fn start_again(&mut self, mounts: &MountNs, ns: &Netns, options: &[&str]) -> Result<LbDaemon> {
        self.start_again_as(&lb_binary()?, mounts, ns, options)
    }

    /// `start_again` with another `lb` binary (an upgrade, e.g. `upgrade_binary()`).
    pub fn start_again_as(&mut self, binary: &Path, mounts: &MountNs, ns: &Netns, options: &[&str]) -> Result<LbDaemon> {
        let config = std::fs::read_to_string(&self.config)?;
        let ifaces: Vec<&str> = self.ifaces.iter().map(String::as_str).collect();
        let mut all = vec!["--instance", self.instance.as_str()];
        let state_dir = self.own_state_dir.as_ref().map(|d| d.to_string_lossy().to_string());
        if let (Some(dir), false) = (&state_dir, options.contains(&"--state-dir")) {
            all.extend(["--state-dir", dir.as_str()]);
        }
        all.extend_from_slice(options);
        let mut lb = Self::start_binary(binary, ns, &config, &ifaces, &all, |args| mounts.spawn(args))?;
        lb.shared_mounts = true;
        if !options.contains(&"--state-dir") {
            // The new daemon uses it now: it removes it when it is dropped, this one must not.
            lb.own_state_dir = self.own_state_dir.take();
        }
        Ok(lb)
    }

    /// `start_with`, but in the mount namespace `mounts` (whose bpffs outlives the daemon)
    /// instead of one of its own.
    pub fn start_in(mounts: &MountNs, ns: &Netns, config: &str, ifaces: &[&str], options: &[&str]) -> Result<LbDaemon> {
        let mut lb = Self::start_by(ns, config, ifaces, options, |args| mounts.spawn(args))?;
        lb.shared_mounts = true;
        Ok(lb)
    }

    /// `start_with`, but `spawn` starts the command line (e.g. behind `setpriv`, as another user).
    pub fn start_by(
        ns: &Netns,
        config: &str,
        ifaces: &[&str],
        options: &[&str],
        spawn: impl FnOnce(&[&str]) -> Result<ChildGuard>,
    ) -> Result<LbDaemon> {
        Self::start_binary(&lb_binary()?, ns, config, ifaces, options, spawn)
    }

    /// `start_by` with the `lb` binary `lb`.
    fn start_binary(
        lb: &Path,
        ns: &Netns,
        config: &str,
        ifaces: &[&str],
        options: &[&str],
        spawn: impl FnOnce(&[&str]) -> Result<ChildGuard>,
    ) -> Result<LbDaemon> {
        let id = names::unique("lbd");
        let dir = std::env::temp_dir();
        let config_path = dir.join(format!("{id}.toml"));
        let socket = dir.join(format!("{id}.sock"));
        std::fs::write(&config_path, config)?;
        // Readable by any user lb is run as (a test runs it unprivileged).
        std::fs::set_permissions(&config_path, std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
        let lb_s = lb.to_string_lossy().to_string();
        let cfg_s = config_path.to_string_lossy().to_string();
        let sock_s = socket.to_string_lossy().to_string();
        let mut args = vec![lb_s.as_str(), "run", "--config", &cfg_s, "--admin-socket", &sock_s];
        // Native unless `options` say otherwise.
        if !options.contains(&"--xdp-mode") {
            args.extend(["--xdp-mode", "native"]);
        }
        for i in ifaces {
            args.push("--iface");
            args.push(i);
        }
        args.extend_from_slice(options);
        let own_state_dir = (!options.contains(&"--state-dir")).then(|| dir.join(format!("{id}.state")));
        let state_s = own_state_dir.as_ref().map(|d| d.to_string_lossy().to_string());
        if let Some(d) = &state_s {
            args.extend(["--state-dir", d.as_str()]);
        }
        let instance = match options.iter().position(|o| *o == "--instance") {
            Some(i) => options.get(i + 1).context("--instance without a name")?.to_string(),
            None => {
                args.extend(["--instance", &id]);
                id.clone()
            }
        };
        let process = spawn(&args)?;
        Ok(LbDaemon {
            process,
            socket,
            instance,
            config: config_path,
            own_state_dir,
            ns_name: ns.name().to_string(),
            ifaces: ifaces.iter().map(|i| i.to_string()).collect(),
            shared_mounts: false,
        })
    }

    /// Runs `lb <args> --admin-socket <this daemon's socket>`: its stdout if it succeeds, else
    /// an error with its exit status and stderr.
    pub fn cli(&self, args: &[&str]) -> Result<String> {
        let out = std::process::Command::new(lb_binary()?)
            .args(args)
            .arg("--admin-socket")
            .arg(&self.socket)
            .output()?;
        if !out.status.success() {
            bail!("`lb {}` failed ({}): {}", args.join(" "), out.status, String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `lb status --json` of this daemon.
    pub fn status(&self) -> Result<serde_json::Value> {
        Ok(serde_json::from_str(&self.cli(&["status", "--json"])?)?)
    }

    /// The config file the daemon was started with (rewrite it, then `lb reload` or SIGHUP).
    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// Sends `signal` (e.g. libc::SIGHUP) to the daemon.
    pub fn signal(&self, signal: i32) {
        unsafe { libc::kill(self.process.pid() as i32, signal) };
    }

    /// Health ("up"/"down") of every backend of service `service`, by address.
    pub fn health(&self, service: &str) -> Result<Vec<(String, String)>> {
        let s = self.status()?;
        let svc = s["services"].as_array().into_iter().flatten()
            .find(|x| x["name"] == service)
            .with_context(|| format!("no service {service} in status"))?;
        Ok(svc["backends"].as_array().into_iter().flatten()
            .map(|b| (b["address"].as_str().unwrap_or("").to_string(), b["health"].as_str().unwrap_or("").to_string()))
            .collect())
    }

    /// The pin directory, /sys/fs/bpf/lb/<instance>, as seen through `mounts` (lb runs there).
    pub fn pin_dir(&self, mounts: &MountNs) -> PathBuf {
        mounts.path(format!("{PIN_ROOT}/{}", self.instance))
    }

    /// Sends SIGTERM and waits for a clean exit (see `stop_with`).
    pub fn stop(&mut self) -> Result<()> {
        self.stop_with(libc::SIGTERM)
    }

    /// Sends `signal` (SIGTERM or SIGINT) and waits for a clean exit: the process ends with
    /// status 0. In its own mount namespace, its pins went with it: no XDP program is left on
    /// any of its interfaces. In a shared `MountNs` the data plane stays: every interface keeps
    /// XDP (`detach` removes it).
    pub fn stop_with(&mut self, signal: i32) -> Result<()> {
        self.signal(signal);
        let status = self.process.wait_exit(Duration::from_secs(10))?
            .with_context(|| format!("lb did not exit within 10 s of signal {signal}"))?;
        if !status.success() {
            bail!("lb exited with {status} on signal {signal}, not 0: {}", self.process.stderr_tail());
        }
        for iface in &self.ifaces {
            if self.shared_mounts {
                if !xdp_attached_in(&self.ns_name, iface)? {
                    bail!("{iface} lost its XDP program when lb exited: the data plane should outlive lb");
                }
            } else {
                wait_xdp_detached_in(&self.ns_name, iface, Duration::from_secs(10)).context("after lb exited")?;
            }
        }
        Ok(())
    }

    /// `lb detach` of this daemon's instance in `mounts` (lb must have exited), given its state
    /// directory: afterwards no interface has XDP, the pin directory is gone and so are the
    /// instance's state files (`state_files`). Returns what `lb detach` printed.
    pub fn detach(&self, mounts: &MountNs) -> Result<String> {
        let lb = lb_binary()?;
        // A test that gave its own --state-dir is not followed here: lb detach would look in
        // the host's /var/lib/lb.
        let state_dir = self.state_dir().context("lb detach of a daemon started with its own --state-dir")?;
        let state_s = state_dir.to_string_lossy();
        let out = mounts.exec(&[&lb.to_string_lossy(), "detach", "--instance", &self.instance, "--state-dir", &state_s])?;
        for iface in &self.ifaces {
            wait_xdp_detached_in(&self.ns_name, iface, Duration::from_secs(10)).context("after lb detach")?;
        }
        let pins = self.pin_dir(mounts);
        if pins.exists() {
            bail!("{} is still there after lb detach ({out})", pins.display());
        }
        for file in self.state_files().context("no state dir")? {
            if file.exists() {
                bail!("{} is still there after lb detach ({out})", file.display());
            }
        }
        Ok(out)
    }

    /// The files in which this daemon saves what survives a restart besides the maps, in its
    /// state directory: `drains-`, `running-` (live changes), `health-` and `shunt-<instance>.json`.
    pub fn state_files(&self) -> Option<[PathBuf; 4]> {
        let dir = self.state_dir()?;
        Some(["drains", "running", "health", "shunt"].map(|kind| dir.join(format!("{kind}-{}.json", self.instance))))
    }

    /// The file in which this daemon saves its drains in progress (`drains-<instance>.json`
    /// in its state directory).
    pub fn drains_file(&self) -> Option<PathBuf> {
        self.state_dir().map(|d| d.join(format!("drains-{}.json", self.instance)))
    }

    /// Waits for a daemon that is expected to fail to exit; its stderr (the log and the error).
    /// An error unless lb exited by itself with a non-zero status (not 0, not by a signal).
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<String> {
        let Some(status) = self.process.wait_exit(timeout)? else {
            bail!("lb still runs after {timeout:?}: {}", self.process.stderr_tail());
        };
        let log = self.process.stderr_tail();
        match status.code() {
            Some(code) if code != 0 => Ok(log),
            other => bail!("lb should have failed with an exit code, it ended with {other:?}: {log}"),
        }
    }

    /// Waits until exactly `n` backends of `service` are in service.
    pub fn wait_in_service(&mut self, service: &str, n: u64, timeout: Duration) -> Result<()> {
        self.wait_for(&format!("{n} {service} backends in service"), timeout, |s| {
            in_service(s, service) == Some(n)
        })
    }

    /// The `--state-dir` lb was started with, when this helper chose it.
    pub fn state_dir(&self) -> Option<&Path> {
        self.own_state_dir.as_deref()
    }

    /// `lb <args> --json` of this daemon, parsed.
    pub fn cli_json(&self, args: &[&str]) -> Result<serde_json::Value> {
        let mut all = args.to_vec();
        all.push("--json");
        Ok(serde_json::from_str(&self.cli(&all)?)?)
    }

    /// Waits until `cond` holds on the status, or fails after `timeout` with the last status.
    pub fn wait_for(&mut self, what: &str, timeout: Duration, cond: impl Fn(&serde_json::Value) -> bool) -> Result<()> {
        self.wait_for_json(&["status"], what, timeout, cond)
    }

    /// `wait_for` on another command's `--json` answer (e.g. `["shunt", "status", "web"]`).
    pub fn wait_for_json(
        &mut self,
        args: &[&str],
        what: &str,
        timeout: Duration,
        cond: impl Fn(&serde_json::Value) -> bool,
    ) -> Result<()> {
        let start = Instant::now();
        let mut last = None;
        while start.elapsed() < timeout {
            if !self.process.is_running() {
                bail!("lb exited while waiting for {what}: {}", self.process.stderr_tail());
            }
            match self.cli_json(args) {
                Ok(s) if cond(&s) => return Ok(()),
                Ok(s) => last = Some(s.to_string()),
                Err(e) => last = Some(e.to_string()),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!("timed out after {timeout:?} waiting for {what} (ns {}); last status: {}; lb stderr: {}",
            self.ns_name, last.unwrap_or_default(), self.process.stderr_tail())
    }
}

/// `backends_in_service` of `service` in a status, if the service is there.
pub fn in_service(status: &serde_json::Value, service: &str) -> Option<u64> {
    status["services"].as_array()?.iter().find(|x| x["name"] == service)?["backends_in_service"].as_u64()
}

/// Addresses of the backends of `service` that the XDP program has counted no packet for.
pub fn idle_backends(status: &serde_json::Value, service: &str) -> Vec<String> {
    let backends = status["services"].as_array().into_iter().flatten()
        .filter(|s| s["name"] == service)
        .flat_map(|s| s["backends"].as_array().into_iter().flatten());
    backends
        .filter(|b| b["counters"]["packets"].as_u64().unwrap_or(0) == 0)
        .map(|b| b["address"].to_string())
        .collect()
}

/// Packets the data plane counted for `service` in a status; 0 if absent.
pub fn service_packets(status: &serde_json::Value, service: &str) -> u64 {
    let svc = status["services"].as_array().into_iter().flatten().find(|s| s["name"] == service);
    svc.and_then(|s| s["counters"]["packets"].as_u64()).unwrap_or(0)
}

/// Packets counted under `outcome` (e.g. "tx_to_backend") in a status; 0 if absent.
pub fn outcome(status: &serde_json::Value, outcome: &str) -> u64 {
    status["outcomes"][outcome].as_u64().unwrap_or(0)
}

impl Drop for LbDaemon {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = std::fs::remove_file(&self.config);
        let _ = std::fs::remove_file(&self.socket);
        if let Some(dir) = &self.own_state_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
