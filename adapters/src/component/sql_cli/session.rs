//! The `Component` and its `Session`: one client run per operation, SQL on standard input.

use super::*;

/// The CLI adapter of one configured component.
pub struct CliComponent {
    pub(super) cfg: ComponentConfig,
    pub(super) settings: SqlSettings,
    pub(super) spec: Arc<CliSpec>,
}

impl CliComponent {
    pub fn new(cfg: &ComponentConfig) -> Result<Self, ComponentError> {
        let settings = SqlSettings::from_config(cfg)?;
        if settings.kind.access != Access::Cli {
            return Err(settings.unsupported("open"));
        }
        let spec = build_spec(cfg, &settings).map_err(|r| settings.connect_err(r))?;
        Ok(CliComponent {
            cfg: cfg.clone(),
            settings,
            spec: Arc::new(spec),
        })
    }
}

#[async_trait::async_trait]
impl Component for CliComponent {
    configured_identity!(sql_capabilities);

    /// Nothing to connect: every operation runs the client afresh (the first one reports a
    /// server that cannot be reached or a rejected password).
    async fn open(&self, endpoint: &Endpoint) -> Result<Box<dyn Session>, ComponentError> {
        Ok(Box::new(CliSession {
            settings: self.settings.clone(),
            spec: self.spec.clone(),
            command: self
                .spec
                .command
                .replace("{workdir}", &shell_quote(&endpoint.workdir)),
            password: self.cfg.password.clone(),
            target: endpoint.target.clone(),
            workdir: endpoint.workdir.clone(),
        }))
    }
}

pub(super) struct CliSession {
    pub(super) settings: SqlSettings,
    pub(super) spec: Arc<CliSpec>,
    pub(super) command: String,
    pub(super) password: Option<Secret>,
    pub(super) target: Arc<dyn Target>,
    pub(super) workdir: String,
}

impl CliSession {
    async fn run(&mut self, sql: &str, want_rows: bool) -> Result<Outcome, ComponentError> {
        let spec = &self.spec;
        let mut input =
            String::with_capacity(spec.prelude.len() + sql.len() + spec.epilogue.len() + 4);
        input.push_str(&spec.prelude);
        input.push_str(sql.trim_end());
        if !sql.trim_end().ends_with(';') {
            // on its own line: the SQL may end in a `--` comment
            input.push_str("\n;");
        }
        input.push('\n');
        input.push_str(&spec.epilogue);
        let mut req = ExecRequest::new(self.command.clone(), self.settings.op_timeout);
        req.stdin = Some(input.into_bytes());
        req.capture_limit = 64 << 20;
        if !self.workdir.is_empty() {
            req.cwd = Some(self.workdir.clone());
        }
        req.env = spec.env.clone();
        if let (Some(var), Some(pw)) = (&spec.password_env, &self.password) {
            req.env.push((var.clone(), pw.expose().to_string()));
        }
        let out = self.target.exec(req, &CancellationToken::new()).await?;
        if out.timed_out {
            return Err(self.settings.lost(format!(
                "`{}` gave no answer within {} ms (option timeout_ms); it was killed",
                spec.program,
                self.settings.op_timeout.as_millis()
            )));
        }
        if out.cancelled {
            return Err(self.settings.lost("cancelled"));
        }
        if out.stdout_dropped > 0 {
            return Err(ComponentError::Operation(format!(
                "the result is larger than {} MiB",
                out.stdout.len() >> 20
            )));
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.exit_code != Some(0) {
            return Err(self.client_error(out.exit_code, &stderr, &out.stdout));
        }
        if let Some(re) = &spec.error_regex {
            let stdout = String::from_utf8_lossy(&out.stdout);
            if let Some(line) = stdout
                .lines()
                .chain(stderr.lines())
                .find(|l| re.is_match(l))
            {
                return Err(classify_generic(&self.settings, line.trim(), &stderr));
            }
        }
        let parsed = parse_output(spec, &out.stdout).map_err(|e| {
            ComponentError::Operation(format!("cannot read the output of `{}`: {e}", spec.program))
        })?;
        Ok(parsed.outcome(sql, want_rows))
    }

    /// Turn a failed client run into the right error: the server's SQL error, or a connection
    /// problem (refused, authentication failed), or a missing client.
    fn client_error(&self, code: Option<i32>, stderr: &str, stdout: &[u8]) -> ComponentError {
        let program = &self.spec.program;
        let text = if stderr.trim().is_empty() {
            String::from_utf8_lossy(stdout).trim().to_string()
        } else {
            stderr.trim().to_string()
        };
        if code == Some(127) || (code == Some(126) && text.contains(program.as_str())) {
            return self.settings.connect_err(format!(
                "the client `{program}` cannot be run on target `{}`: {}",
                self.target.id(),
                short(&text)
            ));
        }
        let Some(code) = code else {
            return self.settings.lost(format!(
                "`{program}` was killed by a signal: {}",
                short(&text)
            ));
        };
        match self.spec.errors {
            Errors::Psql => psql_error(&self.settings, code, &text),
            Errors::Mysql => mysql_error(&self.settings, &text),
            Errors::Sqlite => sqlite_error(&self.settings, &text),
            Errors::Generic => classify_generic(&self.settings, &text, &text),
        }
    }
}

#[async_trait::async_trait]
impl Session for CliSession {
    async fn version(&mut self) -> Result<String, ComponentError> {
        let sql = self.spec.version_sql.clone();
        Ok(self.run(&sql, true).await?.into_first_value())
    }

    async fn execute(
        &mut self,
        op: &str,
        args: &Map<String, Value>,
    ) -> Result<Value, ComponentError> {
        match op {
            "sql.query" => Ok(self.run(arg_str(op, args, "sql")?, true).await?.into_json()),
            "sql.exec" => match self.run(arg_str(op, args, "sql")?, false).await? {
                Outcome::Affected(n) => Ok(json!({ "affected": n })),
                Outcome::Rows(r) => Ok(json!({ "affected": r.rows.len() })),
            },
            "sql.info" => Ok(self.settings.info(self.spec.dialect.as_deref())),
            other => Err(self.settings.unsupported(other)),
        }
    }
}
