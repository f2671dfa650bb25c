//! `promptops serve`: the OpenAI-compatible gateway over the config's providers, with the
//! embedded local model always available as provider `local`.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Args;
use promptops_gateway::{AppState, GatewayConfig};
use promptops_llm::{LlmError, Provider, ProviderConfig, ProviderKind, ProviderSet};
use promptops_local::chat::ChatOptions;
use promptops_local::{LocalProvider, ModelCache};

use crate::Outcome;
use crate::registry_cmd;

/// Prints a status line on stderr: the server's only console output (requests go to metrics).
#[expect(
    clippy::print_stderr,
    reason = "serve reports its state on the terminal"
)]
fn status(line: std::fmt::Arguments<'_>) {
    eprintln!("{line}");
}

/// Arguments of `promptops serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (default: the config's `[server] listen`, else 127.0.0.1:8080;
    /// port 0 picks a free port, printed at start).
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Server threads, each with its own runtime (default: the config's `[server] workers`,
    /// else one per CPU).
    #[arg(long, value_name = "N")]
    workers: Option<std::num::NonZeroUsize>,
    /// Serve on a non-loopback address without API keys (anyone who can connect may spend).
    #[arg(long)]
    allow_unauthenticated: bool,
}

/// Runs the gateway until Ctrl-C or SIGTERM.
pub fn run(
    args: ServeArgs,
    config_path: Option<&std::path::Path>,
    database_url: Option<&str>,
) -> anyhow::Result<Outcome> {
    let mut config = match config_path {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read config {}", path.display()))?;
            GatewayConfig::from_toml(&text)
                .with_context(|| format!("invalid config {}", path.display()))?
        }
        None => GatewayConfig::default(),
    };
    // The flag (or PROMPTOPS_DATABASE_URL) wins over the file; with neither, the same default
    // SQLite file the `prompt` commands use, so `prompt add` then `serve` just works.
    config.database_url = match (database_url, config.database_url.take()) {
        (Some(given), _) => Some(given.to_owned()),
        (None, Some(from_file)) => Some(from_file),
        (None, None) => Some(registry_cmd::database_url(None)?),
    };
    let listen = args.listen.unwrap_or(config.listen);
    if let Some(workers) = args.workers {
        config.workers = workers;
    }
    promptops_gateway::check_bind(
        listen,
        !config.access.keys.is_empty(),
        args.allow_unauthenticated,
    )?;
    init_access_log();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(config, listen))?;
    Ok(Outcome::Success)
}

async fn serve(config: GatewayConfig, listen: SocketAddr) -> anyhow::Result<()> {
    let providers = build_providers(&config)?;
    let provider_names = providers.names().join(", ");
    let keys = config.access.keys.len();
    let state = AppState::from_config(&config, providers)
        .await
        .context("cannot start the gateway")?;
    let listener = std::net::TcpListener::bind(listen)
        .with_context(|| format!("cannot listen on {listen}"))?;
    let bound = listener
        .local_addr()
        .context("cannot read the bound address")?;
    status(format_args!(
        "promptops: serving the OpenAI-compatible API on http://{bound}/v1"
    ));
    status(format_args!(
        "promptops: providers: {provider_names}; {} server thread(s)",
        config.workers
    ));
    if keys == 0 {
        status(format_args!(
            "promptops: no API keys configured: accepting unauthenticated requests"
        ));
    } else {
        status(format_args!("promptops: {keys} API key(s) configured"));
    }
    let (stop_sender, stop) = tokio::sync::watch::channel(false);
    let background = state.spawn_background(stop, |error| {
        status(format_args!("promptops: background task: {error}"));
    });
    promptops_gateway::serve_workers(listener, config.workers, state, shutdown_signal())
        .await
        .context("gateway failed")?;
    let _ = stop_sender.send(true);
    let _ = background.await;
    status(format_args!("promptops: stopped"));
    Ok(())
}

/// The config's providers, `local` ones built from the model cache; the embedded model is added
/// as `local` when the config does not name a provider so.
fn build_providers(config: &GatewayConfig) -> anyhow::Result<ProviderSet> {
    let factory = |entry: &ProviderConfig| -> Result<Arc<dyn Provider>, LlmError> {
        local_provider(&entry.name).map_err(|error| LlmError::Config {
            key: format!("providers ({})", entry.name),
            reason: format!("{error:#}"),
        })
    };
    let env = |name: &str| std::env::var(name).ok();
    let mut providers = ProviderSet::from_config(&config.llm, &env, Some(&factory))
        .context("cannot build the providers")?;
    let declares_local = config
        .llm
        .providers
        .iter()
        .any(|entry| entry.name == "local" || entry.kind == ProviderKind::Local);
    if !declares_local {
        match local_provider("local") {
            Ok(provider) => providers.insert(provider),
            Err(error) => status(format_args!(
                "promptops: embedded model not available: {error:#}"
            )),
        }
    }
    if providers.names().is_empty() {
        bail!("no providers: configure [[providers]] or install the embedded model");
    }
    Ok(providers)
}

fn local_provider(name: &str) -> anyhow::Result<Arc<dyn Provider>> {
    let cache = ModelCache::from_env()?;
    let provider = LocalProvider::from_cache(name, &cache, ChatOptions::default())?;
    Ok(Arc::new(provider))
}

/// JSON log lines on stderr: the access log (`promptops::access`, no message content) at
/// `info`, everything else at `warn`; `PROMPTOPS_LOG` takes an env-filter directive instead.
fn init_access_log() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PROMPTOPS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,promptops::access=info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_current_span(false)
        .try_init();
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
