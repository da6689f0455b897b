//! `cargo xtask demo`: a client, the load balancer and three backends in network namespaces;
//! `lb run` balances real TCP connections in NAT mode, then one backend is stopped and started
//! again. Prints how the connections were spread at each step. Removes everything it made.

use std::{collections::BTreeMap, net::IpAddr, time::Duration};

use anyhow::Result;
use lb_tests::{
    client::tcp_ask,
    daemon::LbDaemon,
    lb_config::{ServiceConfig, render},
    servers::BackendServer,
    topology::TwoArm,
};

const VIP: &str = "10.200.100.1";

fn spread(topo: &TwoArm, n: usize) -> Result<BTreeMap<String, usize>> {
    let vip: IpAddr = VIP.parse()?;
    let mut counts = BTreeMap::new();
    for b in topo.backends() {
        counts.insert(b.label().to_string(), 0);
    }
    for _ in 0..n {
        *counts.entry(tcp_ask(topo.client().ns(), vip, 80, Duration::from_secs(3))?).or_default() += 1;
    }
    Ok(counts)
}

fn show(step: &str, counts: &BTreeMap<String, usize>) {
    println!("\n{step}");
    for (backend, n) in counts {
        println!("  {backend:<12} {n:>3} {}", "#".repeat(*n));
    }
}

fn main() -> Result<()> {
    println!("building namespaces: client -- lb -- switch -- 3 backends (10.200.0.0/16, all local)");
    let topo = TwoArm::new(3)?;
    let mut servers = BackendServer::start_all(topo.backends(), 8080)?;
    let config = render(&[ServiceConfig {
        name: "web".into(),
        vip: VIP.parse()?,
        port: 80,
        protocol: "tcp",
        forwarding: "nat",
        backends: topo.backends().iter().map(|b| b.addr(false)).collect(),
        backend_port: 8080,
    }]);
    println!("config:\n{config}");
    let (arm0, arm1) = (topo.lb_arm0().name().to_string(), topo.lb_arm1().name().to_string());
    let mut lb = LbDaemon::start(topo.lb().ns(), &config, &[&arm0, &arm1])?;
    lb.wait_in_service("web", 3, Duration::from_secs(30))?;

    show("60 new connections to 10.200.100.1:80, 3 healthy backends:", &spread(&topo, 60)?);

    println!("\nstopping {} ...", topo.backend(0).label());
    servers[0].kill()?;
    lb.wait_in_service("web", 2, Duration::from_secs(30))?;
    show("60 new connections after its health checks failed:", &spread(&topo, 60)?);

    println!("\nstarting {} again ...", topo.backend(0).label());
    servers[0].restart()?;
    lb.wait_in_service("web", 3, Duration::from_secs(30))?;
    show("60 new connections after it came back:", &spread(&topo, 60)?);

    let status = std::process::Command::new(lb_tests::daemon::lb_binary()?)
        .args(["status", "--admin-socket"]).arg(&lb.socket).output()?;
    println!("\n$ lb status\n{}", String::from_utf8_lossy(&status.stdout));
    lb.stop()?;
    println!("lb stopped (XDP detached); removing namespaces");
    Ok(())
}
