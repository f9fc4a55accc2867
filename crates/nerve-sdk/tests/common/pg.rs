//! The PostgreSQL the tests use: `NERVE_TEST_POSTGRES` (a tokio-postgres connection string), or the
//! machine's server at 127.0.0.1:5432 as user `postgres` with trust auth. Each test works in a schema of
//! its own, dropped when the test ends (passed or failed), so tests run in parallel.

use nerve_sdk::tokio_postgres::{self, Client, NoTls};

fn connection_string() -> String {
    std::env::var("NERVE_TEST_POSTGRES")
        .unwrap_or_else(|_| "host=127.0.0.1 port=5432 user=postgres dbname=postgres".to_string())
}

/// Connects, with the connection driven by a task of the current runtime.
pub async fn connect() -> Client {
    let (client, connection) = tokio_postgres::connect(&connection_string(), NoTls)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "PostgreSQL is not reachable at {:?} ({e}): start it, or point NERVE_TEST_POSTGRES at one",
                connection_string()
            )
        });
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// A schema of the test's own.
pub struct Schema {
    pub name: String,
}

impl Schema {
    pub async fn create() -> Schema {
        let name = format!("nerve_test_{}", uuid::Uuid::now_v7().simple());
        connect()
            .await
            .batch_execute(&format!("CREATE SCHEMA {name}"))
            .await
            .expect("schema created");
        Schema { name }
    }

    /// `table` in this schema.
    pub fn table(&self, table: &str) -> String {
        format!("{}.{table}", self.name)
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        // Drop runs inside the test's runtime, which cannot be blocked on: a thread with a runtime of
        // its own drops the schema.
        let name = self.name.clone();
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async {
                connect()
                    .await
                    .batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
                    .await
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("schema {} was not dropped: {dropped:?}", self.name);
        }
    }
}
