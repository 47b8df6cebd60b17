//! `causeway demo`: collector + query (as `up`), the orders example writing
//! one JSON log file per service, and an agent shipping those files; it
//! places orders, waits until the query API shows every flow settled, and
//! prints them.
//!
//! Everything a user would run for real runs here for real: the files are
//! real files, the agent tails them, the collector indexes over HTTP, the
//! flows are read back from the query API over HTTP.

use std::path::Path;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use causeway_agent::AgentConfig;
use causeway_middleware::{DirectorySink, LIFECYCLE_TARGET, RecordLayer};
use causeway_model::FlowsPage;
use causeway_orders::{Style, Transport, sample_orders};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::CausewayConfig;
use crate::daemons::{Up, bind_up};
use crate::demo_orders::{self, Placed};
use crate::shutdown::Shutdown;

const EXAMPLE_TARGET: &str = "causeway_orders";

/// Two outputs: the example's records to one file per service (what a real
/// service would write), and our own warnings to stderr.
fn init_tracing(log_dir: &Path) -> anyhow::Result<()> {
    let sink = DirectorySink::new(log_dir)
        .with_context(|| format!("creating the log directory {}", log_dir.display()))?;
    let records = RecordLayer::new("orders", sink).with_filter(
        Targets::new()
            .with_target(LIFECYCLE_TARGET, LevelFilter::TRACE)
            .with_target(EXAMPLE_TARGET, LevelFilter::TRACE),
    );
    let own = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("warn"))
        .add_directive(format!("{LIFECYCLE_TARGET}=off").parse()?)
        .add_directive(format!("{EXAMPLE_TARGET}=off").parse()?);
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_filter(own);
    tracing_subscriber::registry()
        .with(records)
        .with(stderr)
        .try_init()
        .context("installing the tracing subscriber")
}

/// The first order id not used by a flow the query API already knows, so
/// repeated demos over one data dir do not merge flows.
async fn first_free_order_id(client: &reqwest::Client, query_url: &str) -> u64 {
    let page: Option<FlowsPage> = async {
        client
            .get(format!("{query_url}/api/v1/flows?limit=500"))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()
    }
    .await;
    page.into_iter()
        .flat_map(|p| p.flows)
        .filter_map(|f| f.correlation_id.strip_prefix("order-")?.parse::<u64>().ok())
        .max()
        .map_or(1001, |max| max + 1)
}

/// Runs the demo with `config`: `[demo]` for what it does, `[collector]`
/// and `[query]` for `up`, and `[agent]` for the agent's limits (its
/// paths, collector URL and checkpoint are the demo's own).
pub async fn run(config: CausewayConfig, shutdown: Shutdown) -> anyhow::Result<ExitCode> {
    let demo = config.demo.clone();
    demo.validate()?;
    // Its agent and client speak plain HTTP to the loopback daemons it
    // starts, and would not trust a certificate made for elsewhere.
    if config.collector.tls().is_some() || config.query.tls().is_some() {
        anyhow::bail!(
            "causeway demo serves plain HTTP on loopback: leave `collector.tls_cert` and \
             `query.tls_cert` unset for it"
        );
    }
    let style = Style::parse(&demo.style).unwrap_or_default();
    // The saga's declared contracts (who takes each event, when a step is
    // stuck or slow), unless the user declared their own.
    let mut config = config;
    if config.query.contracts_file.is_none() {
        let dir = &config.collector.data_dir;
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the data directory {}", dir.display()))?;
        let path = dir.join("demo-contracts.toml");
        std::fs::write(&path, causeway_orders::contracts(style))
            .with_context(|| format!("writing {}", path.display()))?;
        config.query.contracts_file = Some(path);
    }
    let (collector, query) = bind_up(&config).await?;
    let data_dir = config.collector.data_dir.clone();
    let replay_config = write_replay_config(&config)?;
    let log_dir = data_dir.join("demo-logs");
    init_tracing(&log_dir)?;

    // Port 0 means "any free port": the URLs use the bound addresses.
    let collector_addr = collector.http.local_addr()?;
    let query_addr = query.local_addr()?;
    // A secured `up` is used with its own tokens, unless the agent's and
    // TUI's sections name others.
    let agent_token = (config.agent.token.clone())
        .or_else(|| config.collector.tokens.first().map(|t| t.0.clone()));
    let query_token = (config.tui.token.clone()).or_else(|| {
        (config.query.read_tokens.iter())
            .chain(&config.query.tokens)
            .next()
            .map(|t| t.0.clone())
    });
    shutdown.on_signals();
    let up = Up::start(config.collector, config.query, collector, query, &shutdown);
    let collector_url = format!("http://{collector_addr}");
    let query_url = format!("http://{query_addr}");

    let agent_config = AgentConfig {
        paths: vec![log_dir.clone()],
        collector_url: collector_url.clone(),
        checkpoint_path: data_dir.join("demo-agent.checkpoint.json"),
        token: agent_token,
        ..config.agent
    };
    let stop = shutdown.wait();
    let agent = tokio::spawn(async move { causeway_agent::run(agent_config, stop).await });

    // Each demo's queues, streams and subjects are its own.
    let namespace = format!("causeway-demo-{}", std::process::id());
    let transport = Transport::connect(demo.broker.as_deref(), &namespace)
        .await
        .context("connecting the orders services to their broker")?;
    let services = causeway_orders::start_styled(&transport, style)
        .await
        .context("starting the orders services")?;

    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(token) = query_token {
        let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
            .context("query token: not a header value")?;
        value.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, value);
    }
    let client = reqwest::Client::builder()
        .default_headers(headers)
        .timeout(Duration::from_secs(5))
        .build()
        .context("building the HTTP client")?;
    let first_id = first_free_order_id(&client, &query_url).await;
    let count = usize::try_from(demo.order_count()).unwrap_or(usize::MAX);
    let mut orders = sample_orders(count, first_id, &demo.scenario);
    for order in &mut orders {
        order.style = style;
    }
    let pace = match demo.rate {
        Some(rate) => format!("{rate} per second"),
        None => "at once".to_owned(),
    };
    println!(
        "causeway demo: placing {} orders (order-{} .. order-{}, scenario {}, {}) {pace} over {}, \
         logs in {}",
        orders.len(),
        first_id,
        first_id + orders.len() as u64 - 1,
        demo.scenario,
        style.as_str(),
        transport.name(),
        log_dir.display()
    );
    let since = causeway_model::Timestamp::now();
    let placed: Placed = Arc::new(Mutex::new(vec![None; orders.len()]));
    let placing = tokio::spawn(demo_orders::place_all(
        transport.clone(),
        orders.clone(),
        demo.rate,
        placed.clone(),
    ));

    // Follow the flows until the query API shows each as its scenario ends.
    let placing_time = demo.rate.map_or(Duration::ZERO, |rate| {
        Duration::from_secs_f64(orders.len() as f64 / f64::from(rate))
    });
    let deadline = Instant::now() + placing_time + Duration::from_secs(demo.timeout_secs);
    let followed =
        demo_orders::follow(&client, &query_url, &orders, &placed, since, deadline).await;
    placing.await.context("placing orders")??;
    demo_orders::print_report(&orders, &followed, &placed);
    let all_settled = followed.all_settled(&orders);
    if all_settled {
        println!("\nall {} flows reached the query API", orders.len());
    } else {
        println!(
            "\n{} of {} flows did not settle in {}s",
            orders.len() - followed.settled_at.len(),
            orders.len(),
            demo.timeout_secs
        );
    }

    if demo.exit {
        println!(
            "browse them in the terminal: `causeway --config {} up` and `causeway tui`",
            replay_config.display()
        );
    } else {
        if let Some(address) = transport.order_address() {
            println!("\norders are taken from {address} (see examples/README.md)");
        }
        println!(
            "\ncauseway is up (Ctrl-C to stop):\n  \
             query API  {query_url}/api/v1/flows\n  \
             collector  {collector_url}/v1/ingest\n  \
             logs       {}\n\ntry:\n  \
             curl -s {query_url}/api/v1/flows/order-{first_id}\n  \
             curl -s '{query_url}/api/v1/search?q=stage:failed'\n  \
             causeway tui",
            log_dir.display()
        );
        shutdown.wait().await;
    }
    shutdown.trigger();
    for service in services {
        service.abort();
    }
    agent.await.context("agent task")??;
    up.join().await?;
    Ok(if all_settled {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Writes `<data dir>/demo.toml`: the demo's data dir and contracts, so
/// that `causeway --config <it> up` serves its flows as the demo judged
/// them (stuck and slow after the saga's declared times). Returns its path.
fn write_replay_config(config: &CausewayConfig) -> anyhow::Result<std::path::PathBuf> {
    let absolute = |path: &Path| {
        std::path::absolute(path)
            .with_context(|| format!("resolving {}", path.display()))
            .map(|p| p.display().to_string())
    };
    let data_dir = absolute(&config.collector.data_dir)?;
    let mut collector = toml::Table::new();
    collector.insert("data_dir".into(), data_dir.clone().into());
    let mut query = toml::Table::new();
    query.insert("data_dir".into(), data_dir.into());
    if let Some(contracts) = &config.query.contracts_file {
        query.insert("contracts_file".into(), absolute(contracts)?.into());
    }
    let mut file = toml::Table::new();
    file.insert("collector".into(), collector.into());
    file.insert("query".into(), query.into());
    let text = format!(
        "# Written by `causeway demo`: `causeway --config <this file> up` serves its\n\
         # flows with the contracts the demo judged them by.\n{}",
        toml::to_string(&file).context("writing the demo's config")?
    );
    let path = config.collector.data_dir.join("demo.toml");
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}
