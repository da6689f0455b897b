//! `cargo xtask demo`: a client, the load balancer, three backends and one overflow backend in
//! network namespaces; `lb run` balances real TCP connections in NAT mode, then one backend is
//! stopped and started again, then the overflow pool is opened: the primaries take new
//! connections up to their quota (5 a second each), the overflow backend the rest. Then lb is
//! restarted (SIGTERM, `lb run` again) while the pool is open and connections are held: the data
//! plane forwards on its own meanwhile, the new lb adopts it, the pool stays open and every held
//! connection goes on. Prints how the connections were spread at each step. Removes everything
//! it made (`lb detach` at the end).

use std::{collections::BTreeMap, net::IpAddr, time::Duration};

use anyhow::{Result, ensure};
use lb_tests::{
    client::{TcpSession, tcp_ask},
    daemon::LbDaemon,
    mount_ns::MountNs,
    servers::BackendServer,
    topology::TwoArm,
};

const VIP: &str = "10.200.100.1";
/// Primary backends; one more is the overflow pool.
const PRIMARIES: usize = 3;

/// NAT service `web`: three primaries paced at 5 new connections a second each, one overflow
/// backend, a shunt the operator opens and closes.
fn config(topo: &TwoArm) -> String {
    let mut config = format!(
        "[[service]]\nname = \"web\"\nvip = \"{VIP}\"\nport = 80\nprotocol = \"tcp\"\nforwarding = \"nat\"\n\
         table_size = 251\n\n[service.shunt]\nmin_open_secs = 1\ndrain_timeout = 5\n"
    );
    for (i, b) in topo.backends().iter().enumerate() {
        let pool = if i < PRIMARIES { "max_new_sessions_per_sec = 5" } else { "pool = \"overflow\"" };
        config += &format!("\n[[service.backend]]\naddress = \"{}\"\nport = 8080\n{pool}\n", b.addr(false));
    }
    config
}

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
    println!("building namespaces: client -- lb -- switch -- 4 backends (10.200.0.0/16, all local)");
    let topo = TwoArm::new(PRIMARIES + 1)?;
    let mut servers = BackendServer::start_all(topo.backends(), 8080)?;
    let config = config(&topo);
    println!("config:\n{config}");
    let (arm0, arm1) = (topo.lb_arm0().name().to_string(), topo.lb_arm1().name().to_string());
    // lb's own mount namespace, whose bpffs outlives each lb as a host's does (the restart).
    let mounts = MountNs::new(topo.lb().ns())?;
    let mut lb = LbDaemon::start_in(&mounts, topo.lb().ns(), &config, &[&arm0, &arm1], &[])?;
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
    println!("\n(the overflow pool is closed: {} takes nothing, however fast connections come)", topo.backend(PRIMARIES).label());

    println!("\n$ lb shunt open web --reason demo");
    println!("{}", lb.cli(&["shunt", "open", "web", "--reason", "demo"])?.trim_end());
    show("60 new connections with the overflow pool open (primaries paced at 5 new/s each):", &spread(&topo, 60)?);

    // A restart under traffic: connections held across it, the pool open throughout.
    let vip: IpAddr = VIP.parse()?;
    let mut held = (0..10).map(|_| TcpSession::connect(topo.client().ns(), vip, 80, Duration::from_secs(3))).collect::<Result<Vec<_>>>()?;
    println!("\nrestarting lb with the pool open and {} connections held open: SIGTERM ...", held.len());
    lb.stop()?;
    let answered = echo_all(&mut held, "while no lb runs")?;
    println!("lb exited; the data plane forwards on its own: {answered} of {} held connections answered", held.len());
    println!("$ lb run ... (the same command again)");
    lb = lb.start_again(&mounts, topo.lb().ns(), &[])?;
    lb.wait_for("lb status to answer", Duration::from_secs(30), |s| s["adopted"].is_boolean())?;
    let log = lb_tests::child::plain(&lb.process.stderr_tail());
    for line in log.lines().filter(|l| l.contains("adopted, ") || l.contains("overflow pool open")) {
        println!("  {}", line.split_once(": ").map_or(line, |(_, m)| m));
    }
    let answered = echo_all(&mut held, "after the restart")?;
    println!("{answered} of {} held connections answered after the restart", held.len());
    let pool = lb.cli_json(&["shunt", "status", "web"])?;
    println!("the overflow pool after the restart: {} ({})", pool[0]["state"], pool[0]["why"]);
    show("60 new connections after the restart (the pool still open):", &spread(&topo, 60)?);
    drop(held);

    println!("\n$ lb shunt close web --reason demo");
    println!("{}", lb.cli(&["shunt", "close", "web", "--reason", "demo"])?.trim_end());
    lb.wait_for_json(&["shunt", "status", "web"], "the pool closed", Duration::from_secs(30), |v| {
        v[0]["state"] == "closed"
    })?;
    println!("\n$ lb shunt report\n{}", lb.cli(&["shunt", "report"])?.trim_end());

    let status = std::process::Command::new(lb_tests::daemon::lb_binary()?)
        .args(["status", "--admin-socket"]).arg(&lb.socket).output()?;
    println!("\n$ lb status\n{}", String::from_utf8_lossy(&status.stdout));
    lb.stop()?;
    println!("lb stopped; the data plane still forwards. $ lb detach");
    lb.detach(&mounts)?;
    println!("lb detached (XDP removed, pins and state files gone); removing namespaces");
    Ok(())
}

/// Sends a line on every held connection; how many echoed it (all, or an error naming `when`).
fn echo_all(held: &mut [TcpSession], when: &str) -> Result<usize> {
    for (i, s) in held.iter_mut().enumerate() {
        let reply = s.echo("ping")?;
        ensure!(reply.contains("ping"), "held connection {i} {when}: {reply:?}");
    }
    Ok(held.len())
}
