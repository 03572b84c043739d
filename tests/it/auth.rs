//! Authentication passes through ddlgate for every password method, and the server's own
//! errors reach the client.

use tokio_postgres::NoTls;
use tokio_postgres::error::SqlState;

use crate::support::pg::{MD5, PASSWORD, PgServer, Role, SCRAM, TRUST};
use crate::support::proxy::TestProxy;

/// trust, password (cleartext), md5 and SCRAM-SHA-256 all log in through ddlgate.
#[tokio::test]
async fn every_password_method_passes_through() {
    let pg = PgServer::shared();
    let proxy = TestProxy::start(pg).await;
    for role in [TRUST, PASSWORD, MD5, SCRAM] {
        let client = proxy.connect(role).await;
        let user: String = client
            .query_one("SELECT current_user::text", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(user, role.name);
    }
}

/// A wrong password gets the server's 28P01 for each method that checks one.
#[tokio::test]
async fn wrong_password_gets_28p01() {
    let pg = PgServer::shared();
    let proxy = TestProxy::start(pg).await;
    for role in [PASSWORD, MD5, SCRAM] {
        let wrong = Role {
            password: "not-the-password",
            ..role
        };
        let err = tokio_postgres::connect(&proxy.conn_str(wrong), NoTls)
            .await
            .err()
            .unwrap_or_else(|| panic!("{} logged in with a wrong password", role.name));
        assert_eq!(
            err.code(),
            Some(&SqlState::INVALID_PASSWORD),
            "{}: {err:?}",
            role.name
        );
        let message = err.as_db_error().unwrap().message().to_owned();
        assert!(
            message.contains("password authentication failed"),
            "{message}"
        );
        assert!(
            !message.starts_with("ddlgate"),
            "the server's own error: {message}"
        );
    }
}

/// Connecting to a database that does not exist gets the server's 3D000.
#[tokio::test]
async fn unknown_database_gets_the_servers_error() {
    let pg = PgServer::shared();
    let proxy = TestProxy::start(pg).await;
    let conn = proxy
        .conn_str(SCRAM)
        .replace("dbname=app", "dbname=no_such_db");
    let err = tokio_postgres::connect(&conn, NoTls).await.err().unwrap();
    assert_eq!(err.code(), Some(&SqlState::INVALID_CATALOG_NAME));
}
