//! Event ingestion, alerting and webhook receivers.

fn main() -> anyhow::Result<()> {
    let args = match notification_controller::parse_args(std::env::args_os()) {
        Ok(args) => args,
        Err(err) => err.exit(),
    };
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let controller = notification_controller::start(
            args,
            None,
            notification_controller::server::dispatch::DispatchConfig {
                endpoints: notification_controller::notifier::Endpoints::from_env(),
                ..Default::default()
            },
        )
        .await?;
        controller.wait().await;
        Ok(())
    })
}
