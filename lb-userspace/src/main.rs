use clap::Parser;
use lb::{
    api::{self, Request, Response},
    cli::{Cli, Command},
    config::Config,
    daemon::{self, RunArgs},
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
        Command::Run { config, interfaces, xdp_mode, admin_socket } => {
            daemon::run(RunArgs { config, interfaces, xdp_mode, admin_socket }).await
        }
        Command::Status { json, admin_socket } => match api::call(&admin_socket, &Request::Status).await? {
            Response::Status(s) if json => {
                println!("{}", serde_json::to_string_pretty(&s)?);
                Ok(())
            }
            Response::Status(s) => {
                print!("{}", api::render_text(&s));
                Ok(())
            }
            Response::Error(e) => anyhow::bail!("lb answered: {e}"),
        },
        Command::CheckConfig { config } => {
            let c = Config::load(&config)?;
            println!("{}: ok ({} services)", config.display(), c.services.len());
            Ok(())
        }
    }
}
