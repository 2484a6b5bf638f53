//! `mizzen demo-app`: Istio's Bookinfo services (productpage, details, reviews, ratings)
//! and an httpbin, built into the binary so the local mesh runs its demo without
//! containers. Each behaves as Istio's sample does, paths and JSON alike.

mod details;
mod form;
mod httpbin;
mod outbound;
mod productpage;
mod ratings;
mod reviews;
mod server;
#[cfg(test)]
mod testing;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;

use outbound::{Outbound, Upstream};
use server::{Reply, Request};

/// `mizzen demo-app` arguments.
#[derive(clap::Args)]
pub struct Args {
    /// The app to run.
    app: App,
    /// The app's version; reviews v1 shows no stars, v2 black ones, v3 red ones.
    #[arg(long, default_value = "v1")]
    version: String,
    /// The port to listen on (9080; httpbin 8000).
    #[arg(long, env = "PORT")]
    port: Option<u16>,
    /// The address to listen on: in the local mesh, the replica's own loopback address.
    #[arg(long, env = "POD_IP", default_value = "127.0.0.1")]
    pod_ip: IpAddr,
    /// The pod name reviews reports (default `reviews-VERSION-<random>`).
    #[arg(long, env = "POD_NAME")]
    pod_name: Option<String>,
}

/// The demo apps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum App {
    /// Bookinfo's front end: an HTML page and an API over details and reviews.
    Productpage,
    /// Bookinfo's book details.
    Details,
    /// Bookinfo's book reviews, with ratings from v2 on.
    Reviews,
    /// Bookinfo's book ratings.
    Ratings,
    /// A backend that fails, delays or resets on request, like httpbin.
    Httpbin,
}

impl App {
    fn default_port(self) -> u16 {
        match self {
            App::Httpbin => 8000,
            _ => 9080,
        }
    }
}

/// Runs the app until Ctrl-C.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let service = Service::new(
        args.app,
        &args.version,
        args.pod_name,
        Outbound::from_env()?,
    )?;
    let addr = SocketAddr::new(args.pod_ip, args.port.unwrap_or(args.app.default_port()));
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("listening on {addr}"))?;
    eprintln!(
        "demo-app {:?} {}: listening on http://{}",
        args.app,
        args.version,
        listener.local_addr()?
    );
    tokio::select! {
        served = server::serve(listener, Arc::new(service)) => served?,
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(())
}

/// A running app and what it needs to answer.
pub enum Service {
    /// See [`App::Details`].
    Details,
    /// See [`App::Ratings`].
    Ratings,
    /// See [`App::Reviews`].
    Reviews(reviews::Reviews),
    /// See [`App::Productpage`].
    Productpage(productpage::Productpage),
    /// See [`App::Httpbin`].
    Httpbin,
}

impl Service {
    /// The app `app` at `version`, calling others through `outbound`; service hosts
    /// come from Bookinfo's `*_HOSTNAME` variables.
    pub fn new(
        app: App,
        version: &str,
        pod_name: Option<String>,
        outbound: Outbound,
    ) -> anyhow::Result<Service> {
        Ok(match app {
            App::Details => Service::Details,
            App::Ratings => Service::Ratings,
            App::Reviews => Service::Reviews(reviews::Reviews {
                pod_name: pod_name.unwrap_or_else(|| reviews::pod_name(version)),
                cluster_name: std::env::var("CLUSTER_NAME").unwrap_or_else(|_| "null".into()),
                ratings: reviews::Stars::of_version(version)?.map(|stars| reviews::Ratings {
                    stars,
                    outbound,
                    upstream: Upstream::from_env("ratings", "RATINGS_HOSTNAME"),
                }),
            }),
            App::Productpage => Service::Productpage(productpage::Productpage::from_env(outbound)),
            App::Httpbin => Service::Httpbin,
        })
    }

    async fn handle(&self, request: Request) -> Reply {
        match self {
            Service::Details => details::handle(&request),
            Service::Ratings => ratings::handle(&request),
            Service::Reviews(reviews) => reviews.handle(&request).await,
            Service::Productpage(productpage) => productpage.handle(&request).await,
            Service::Httpbin => httpbin::handle(&request).await,
        }
    }
}
