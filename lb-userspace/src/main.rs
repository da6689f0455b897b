use std::path::Path;

use anyhow::{Context, bail};
use clap::Parser;
use lb::{
    api::{self, Request, Response, ShuntAction},
    cli::{Cli, Command, ServiceOp, ShuntOp},
    config::{Config, session_table_mib},
    daemon::{self, RunArgs},
    dataplane,
};

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Err(e) = run(Cli::parse()).await {
        eprintln!("lb: error: {e:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Run { config, interfaces, xdp_mode, admin_socket, metrics_listen, control_listen, control_token_file, instance, state_dir, fresh, detach_on_exit } => {
            let args = RunArgs { config, interfaces, xdp_mode, admin_socket, metrics_listen, control_listen, control_token_file, instance, state_dir, fresh, detach_on_exit };
            daemon::run(args).await
        }
        Command::Detach { instance, state_dir } => {
            // The pins first: refused (nothing removed) while an lb of the instance runs.
            match dataplane::detach_instance(&instance)? {
                Some(d) => {
                    let links = if d.links.is_empty() { "none".to_string() } else { d.links.join(", ") };
                    println!("instance {instance}: detached (XDP links removed: {links}) and removed {} pins and {}", d.pins, d.path.display());
                }
                None => println!("instance {instance}: no pins at {}/{instance}: nothing to detach", dataplane::PIN_ROOT),
            }
            let removed = daemon::remove_instance_files(&state_dir, &instance.to_string())
                .with_context(|| format!("removing instance {instance}'s state in {}", state_dir.display()))?;
            for path in removed {
                println!("instance {instance}: removed {}", path.display());
            }
            Ok(())
        }
        Command::CheckConfig { config } => {
            let c = Config::load(&config)?;
            let records = c.sessions.capacity;
            let mib = session_table_mib(u64::from(records));
            println!("{}: ok ({} services; session table of {records} records, {mib} MiB)", config.display(), c.services.len());
            Ok(())
        }
        Command::Status { json, admin } => match ask(&admin.path, Request::Status).await? {
            Response::Status(s) if json => print_json(&s),
            Response::Status(s) => {
                print!("{}", api::render_text(&s));
                Ok(())
            }
            other => unexpected(other),
        },
        Command::Metrics { admin } => match ask(&admin.path, Request::Metrics).await? {
            Response::Metrics(text) => {
                print!("{text}");
                Ok(())
            }
            other => unexpected(other),
        },
        Command::Explain { service, flow, json, admin } => {
            match ask(&admin.path, Request::Explain { service, client: flow }).await? {
                Response::Explain(r) if json => print_json(&r),
                Response::Explain(r) => {
                    print!("{}", api::render_explain(&r));
                    Ok(())
                }
                other => unexpected(other),
            }
        }
        Command::Backend { op, admin } => done(ask(&admin.path, op.request()).await?),
        Command::Service { op, admin } => {
            let request = match op {
                ServiceOp::Add { file } => {
                    // Checked here too, so file errors name the file.
                    let config = Config::load(&file)?;
                    if config.services.len() != 1 {
                        bail!(
                            "{}: describes {} services; `lb service add` takes a file with exactly one [[service]]",
                            file.display(),
                            config.services.len()
                        );
                    }
                    let toml = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
                    Request::ServiceAdd { toml }
                }
                ServiceOp::Remove { name } => Request::ServiceRemove { name },
            };
            done(ask(&admin.path, request).await?)
        }
        Command::Reload { admin } => done(ask(&admin.path, Request::Reload).await?),
        Command::Shunt { op, admin } => shunt(&admin.path, op).await,
    }
}

async fn shunt(socket: &Path, op: ShuntOp) -> anyhow::Result<()> {
    let command = |service, action| Request::Shunt { service, action };
    match op {
        ShuntOp::Open { service, reason } => done(ask(socket, command(service, ShuntAction::Open { reason })).await?),
        ShuntOp::Close { service, reason } => done(ask(socket, command(service, ShuntAction::Close { reason })).await?),
        ShuntOp::Release { service } => done(ask(socket, command(service, ShuntAction::Release)).await?),
        ShuntOp::Status { service, json } => match ask(socket, Request::ShuntStatus { service }).await? {
            Response::ShuntStatus(s) if json => print_json(&s),
            Response::ShuntStatus(s) => {
                print!("{}", api::render_shunt_status(&s));
                Ok(())
            }
            other => unexpected(other),
        },
        ShuntOp::Report { json } => match ask(socket, Request::ShuntReport).await? {
            Response::ShuntReport(r) if json => print_json(&r),
            Response::ShuntReport(r) => {
                print!("{}", api::render_report(&r));
                Ok(())
            }
            other => unexpected(other),
        },
    }
}

/// Sends `request`; an error answer becomes this command's error (non-zero exit).
async fn ask(socket: &Path, request: Request) -> anyhow::Result<Response> {
    match api::call(socket, &request).await? {
        Response::Error(e) => bail!("lb answered: {e}"),
        r => Ok(r),
    }
}

fn done(response: Response) -> anyhow::Result<()> {
    match response {
        Response::Done(lines) => {
            for l in lines {
                println!("{l}");
            }
            Ok(())
        }
        other => unexpected(other),
    }
}

fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

fn unexpected(r: Response) -> anyhow::Result<()> {
    bail!("lb answered something unexpected for this command: {r:?}")
}
