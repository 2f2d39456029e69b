//! Which server errors mean "the server went away" rather than "the server answered no": the
//! one list, per engine family, that the driver adapters (`sql.rs`) and the client adapters
//! (`sql_cli.rs`) share. Such an error makes the case `error` (infrastructure; a resume retries
//! it), never `failed`: a shutdown of the server is not the product's answer to the SQL.

/// PostgreSQL family (also openGauss, KingbaseES): SQLSTATEs of a server that shut down, crashed,
/// cannot take the session now, or whose connection broke.
///
/// - class 57 "operator intervention" except `57014` (query_canceled: a statement timeout or a
///   cancel request is the server's answer) and `57000`: `57P01` admin_shutdown (also a
///   terminated backend), `57P02` crash_shutdown, `57P03` cannot_connect_now, `57P04`
///   database_dropped, `57P05` idle_session_timeout;
/// - class 08 "connection exception": every code (`08000`, `08003`, `08006`, `08001`, `08004`,
///   `08007`, `08P01`).
pub const POSTGRES_SERVER_GONE: &[&str] = &[
    "57P01", "57P02", "57P03", "57P04", "57P05", "08000", "08003", "08006", "08001", "08004",
    "08007", "08P01",
];

/// MySQL family (also MariaDB, TiDB, OceanBase): error numbers of a server that went away.
///
/// - `1053` ER_SERVER_SHUTDOWN (shutdown in progress), `1077` ER_NORMAL_SHUTDOWN, `1079`
///   ER_SHUTDOWN_COMPLETE, `1152` ER_ABORTING_CONNECTION, `1927` ER_CONNECTION_KILLED (MariaDB),
///   `4031` ER_CLIENT_INTERACTION_TIMEOUT (MySQL 8);
/// - client side: `2006` CR_SERVER_GONE_ERROR, `2013` CR_SERVER_LOST, `2055` CR_SERVER_LOST_EXTENDED.
pub const MYSQL_SERVER_GONE: &[u32] = &[1053, 1077, 1079, 1152, 1927, 4031, 2006, 2013, 2055];

/// Does this PostgreSQL SQLSTATE mean the server went away?
pub fn postgres_server_gone(sqlstate: &str) -> bool {
    POSTGRES_SERVER_GONE.contains(&sqlstate)
}

/// Does this MySQL error number mean the server went away?
pub fn mysql_server_gone(number: u32) -> bool {
    MYSQL_SERVER_GONE.contains(&number)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shutdowns_are_gone_answers_are_not() {
        assert!(postgres_server_gone("57P01"));
        assert!(postgres_server_gone("08006"));
        assert!(
            !postgres_server_gone("57014"),
            "a cancelled query is an answer"
        );
        assert!(!postgres_server_gone("23505"));
        assert!(mysql_server_gone(2013));
        assert!(mysql_server_gone(1053));
        assert!(!mysql_server_gone(1062));
    }
}
