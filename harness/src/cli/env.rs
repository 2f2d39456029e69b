//! `adaptest env`: the environment of the local host as adaptest captures it.

use super::{CliError, runtime};
use crate::events::Format;
use crate::exit_codes;
use adaptest_adapters::Target;
use clap::Args;

#[derive(Debug, Args)]
pub struct EnvArgs {
    #[arg(long, value_enum, default_value = "human")]
    format: Format,
}

pub fn cmd_env(a: EnvArgs) -> Result<i32, CliError> {
    let rt = runtime();
    let target = adaptest_adapters::target::LocalTarget::new("local");
    let env = rt.block_on(target.environment()).map_err(CliError::infra)?;
    match a.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&env).expect("json")),
        Format::Human => {
            let gib = env.memory_bytes as f64 / (1u64 << 30) as f64;
            println!("arch        {}", env.arch);
            println!(
                "cpu         {} ({}), {} cores",
                env.cpu_model, env.cpu_vendor, env.cores
            );
            println!("memory      {gib:.1} GiB, page size {}", env.page_size);
            println!(
                "os          {} ({} {})",
                env.os_name, env.os_id, env.os_version
            );
            println!("kernel      {}", env.kernel);
            println!("libc        {}", env.libc);
            println!("hostname    {}", env.hostname);
            for (k, v) in &env.extra {
                println!("{k:<11} {v}");
            }
        }
    }
    Ok(exit_codes::OK)
}
