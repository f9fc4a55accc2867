//! `nerve user`: create, list and delete SCRAM users with DescribeUserScramCredentials and
//! AlterUserScramCredentials (KIP-554), as `kafka-configs.sh --alter --entity-type users` does.
//!
//! The password never leaves this process: `create` draws a random salt and sends `Hi(password, salt,
//! iterations)`, from which the broker derives the stored and server keys.
//!
//! The first user has a chicken-and-egg problem: on a broker whose listeners all need SASL, no one can
//! authenticate before a user exists. `create --data-dir DIR` writes the credential straight into the data
//! directory's metadata while no broker runs; the metadata store's lock makes it refuse while one does.

use std::io::BufRead;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{ArgGroup, Args, Subcommand};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_user_scram_credentials_request::{
    ScramCredentialDeletion, ScramCredentialUpsertion,
};
use kafka_protocol::messages::describe_user_scram_credentials_request::UserName;
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse,
    DescribeUserScramCredentialsRequest,
};
use kafka_protocol::protocol::StrBytes;
use nerve_auth::{ScramCredential, ScramMechanism};
use nerve_storage::{LocalMetaStore, MetaStore, StorageError, StoredScramCredential};

use super::kafka_client::{broker_error, KafkaClient};
use super::{print_table, row, ClientArgs};

#[derive(Args, Debug)]
#[command(after_help = "Examples:
  echo \"$PASSWORD\" | nerve user create alice --password-stdin
  nerve user list
  nerve user delete alice
  nerve user create admin --password-stdin --data-dir ./nerve-data   # before the first start

Against a SASL listener, give the client settings:
  nerve user list --command-config admin.properties
  nerve user list -X security.protocol=SASL_SSL -X sasl.mechanism=SCRAM-SHA-512 \\
    -X sasl.username=admin -X sasl.password=... -X ssl.ca.location=ca.pem")]
pub(crate) struct UserArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[command(subcommand)]
    command: UserCommand,
}

#[derive(Subcommand, Debug)]
enum UserCommand {
    /// Create a SCRAM user, or give an existing one a new password for the mechanism.
    #[command(
        group(ArgGroup::new("secret").required(true).args(["password_stdin", "password"])),
        after_help = "The password is salted and hashed here (RFC 5802's Hi with a random 32-byte salt); \
the broker receives the salt and the salted password only, through AlterUserScramCredentials. A user may \
have a credential for each mechanism; run create once per mechanism the user's clients use.

With --data-dir the credential is written into that data directory directly, for the first user of a \
broker whose listeners all need authentication. No broker may be running on the directory: the command \
refuses while one is.

Examples:
  echo \"$PASSWORD\" | nerve user create alice --password-stdin
  nerve user create alice --password-stdin --mechanism SCRAM-SHA-256 --iterations 16384 < password.txt
  nerve user create admin --password-stdin --data-dir /var/lib/nerve < admin-password.txt"
    )]
    Create {
        /// The user's name: the principal is User:NAME.
        name: String,
        /// Read the password from the first line of stdin (without its line ending).
        #[arg(long)]
        password_stdin: bool,
        /// The password. Other users of the machine can see it in the process list: prefer
        /// --password-stdin.
        #[arg(long, value_name = "PASSWORD")]
        password: Option<String>,
        /// SCRAM-SHA-256 or SCRAM-SHA-512.
        #[arg(long, default_value = "SCRAM-SHA-512", value_parser = parse_mechanism)]
        mechanism: ScramMechanism,
        /// PBKDF2 iterations of the salted password, within Kafka's bounds.
        #[arg(
            long,
            default_value_t = 8192,
            value_parser = clap::value_parser!(u32).range(
                i64::from(ScramMechanism::MIN_ITERATIONS)..=i64::from(ScramMechanism::MAX_ITERATIONS)
            )
        )]
        iterations: u32,
        /// Write the credential into this data directory instead of sending it to a broker; only while no
        /// broker runs on it.
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
    },
    /// List the SCRAM users with their mechanisms and iteration counts.
    #[command(after_help = "Examples:
  nerve user list")]
    List,
    /// Delete a user's SCRAM credentials: every mechanism, or the one given.
    #[command(
        after_help = "Deleting the credential does not close the user's open connections; it \
keeps them from authenticating again.

Examples:
  nerve user delete alice
  nerve user delete alice --mechanism SCRAM-SHA-256"
    )]
    Delete {
        /// The user's name.
        name: String,
        /// Delete only this mechanism's credential [default: all the user has].
        #[arg(long, value_parser = parse_mechanism)]
        mechanism: Option<ScramMechanism>,
    },
}

fn parse_mechanism(text: &str) -> Result<ScramMechanism, String> {
    ScramMechanism::from_name(&text.to_ascii_uppercase())
        .ok_or_else(|| format!("`{text}`: expected SCRAM-SHA-256 or SCRAM-SHA-512"))
}

pub(crate) fn run(args: UserArgs) -> Result<()> {
    match args.command {
        UserCommand::Create {
            name,
            password_stdin,
            password,
            mechanism,
            iterations,
            data_dir,
        } => {
            check_name(&name)?;
            let password = match password {
                Some(password) => password,
                None if password_stdin => read_password(std::io::stdin().lock())?,
                None => unreachable!("clap requires --password or --password-stdin"),
            };
            if password.is_empty() {
                bail!("the password is empty");
            }
            match data_dir {
                Some(dir) => create_offline(&dir, &name, &password, mechanism, iterations),
                None => create(&args.client, &name, &password, mechanism, iterations),
            }
        }
        UserCommand::List => list(&args.client),
        UserCommand::Delete { name, mechanism } => delete(&args.client, &name, mechanism),
    }
}

fn check_name(name: &str) -> Result<()> {
    if name.is_empty() {
        bail!("the user name is empty");
    }
    Ok(())
}

/// The first line of `input` without its line ending.
fn read_password(mut input: impl BufRead) -> Result<String> {
    let mut line = String::new();
    input
        .read_line(&mut line)
        .context("cannot read the password from stdin")?;
    let password = line.strip_suffix('\n').unwrap_or(&line);
    let password = password.strip_suffix('\r').unwrap_or(password);
    Ok(password.to_string())
}

fn create(
    client: &ClientArgs,
    name: &str,
    password: &str,
    mechanism: ScramMechanism,
    iterations: u32,
) -> Result<()> {
    let salt = ScramCredential::random_salt();
    let salted = mechanism.salted_password(password.as_bytes(), &salt, iterations)?;
    let mut kafka = client.kafka_client()?;
    let upsertion = ScramCredentialUpsertion::default()
        .with_name(StrBytes::from_string(name.to_string()))
        .with_mechanism(mechanism.kafka_code())
        .with_iterations(i32::try_from(iterations)?)
        .with_salt(salt.into())
        .with_salted_password(salted.into());
    let response = kafka
        .call(&AlterUserScramCredentialsRequest::default().with_upsertions(vec![upsertion]))?;
    check_alter(&response, name, "cannot set the credential of user")?;
    println!("set the {mechanism} credential of user {name} ({iterations} iterations)");
    Ok(())
}

fn create_offline(
    dir: &Path,
    name: &str,
    password: &str,
    mechanism: ScramMechanism,
    iterations: u32,
) -> Result<()> {
    let credential = ScramCredential::generate(mechanism, password.as_bytes(), iterations)?;
    let meta = match LocalMetaStore::open(dir) {
        Ok(meta) => meta,
        Err(StorageError::Locked { .. }) => bail!(
            "a broker is running on {}; create the user through it with --bootstrap",
            dir.display()
        ),
        Err(e) => {
            return Err(e).with_context(|| format!("cannot open the metadata in {}", dir.display()))
        }
    };
    let stored = StoredScramCredential {
        salt: credential.salt,
        stored_key: credential.stored_key,
        server_key: credential.server_key,
        iterations: credential.iterations,
    };
    futures::executor::block_on(meta.set_scram_credential(name, mechanism.name(), Some(stored)))
        .with_context(|| format!("cannot write the credential into {}", dir.display()))?;
    println!(
        "set the {mechanism} credential of user {name} ({iterations} iterations) in {}",
        dir.display()
    );
    Ok(())
}

/// A user's credentials as DescribeUserScramCredentials reports them: (mechanism, iterations).
type Described = Vec<(String, Vec<(i8, i32)>)>;

/// Describes `users` (every user when `None`); a user asked for by name that has no credential is left out.
fn describe(kafka: &mut KafkaClient, users: Option<&[&str]>) -> Result<Described> {
    let request = DescribeUserScramCredentialsRequest::default().with_users(users.map(|users| {
        users
            .iter()
            .map(|u| UserName::default().with_name(StrBytes::from_string(u.to_string())))
            .collect()
    }));
    let response = kafka.call(&request)?;
    if let Some(error) = broker_error(response.error_code, response.error_message.as_ref()) {
        bail!("cannot list the users: {error}");
    }
    let mut out = Vec::new();
    for result in response.results {
        if result.error_code == ResponseError::ResourceNotFound.code() {
            continue;
        }
        if let Some(error) = broker_error(result.error_code, result.error_message.as_ref()) {
            bail!("cannot describe user {}: {error}", result.user.as_str());
        }
        let mechanisms = result
            .credential_infos
            .iter()
            .map(|info| (info.mechanism, info.iterations))
            .collect();
        out.push((result.user.to_string(), mechanisms));
    }
    out.sort();
    Ok(out)
}

fn mechanism_name(code: i8) -> String {
    ScramMechanism::from_kafka_code(code)
        .map_or_else(|| format!("UNKNOWN({code})"), |m| m.to_string())
}

fn list(client: &ClientArgs) -> Result<()> {
    let mut kafka = client.kafka_client()?;
    let users = describe(&mut kafka, None)?;
    let mut rows = vec![row(&["USER", "MECHANISM", "ITERATIONS"])];
    for (user, mechanisms) in &users {
        for (mechanism, iterations) in mechanisms {
            rows.push(vec![
                user.clone(),
                mechanism_name(*mechanism),
                iterations.to_string(),
            ]);
        }
    }
    print_table(&rows);
    Ok(())
}

fn delete(client: &ClientArgs, name: &str, mechanism: Option<ScramMechanism>) -> Result<()> {
    check_name(name)?;
    let mut kafka = client.kafka_client()?;
    let mechanisms: Vec<i8> = match mechanism {
        Some(mechanism) => vec![mechanism.kafka_code()],
        None => {
            let described = describe(&mut kafka, Some(&[name]))?;
            let mechanisms: Vec<i8> = described
                .into_iter()
                .filter(|(user, _)| user == name)
                .flat_map(|(_, mechanisms)| mechanisms.into_iter().map(|(m, _)| m))
                .collect();
            if mechanisms.is_empty() {
                bail!("user {name} does not exist");
            }
            mechanisms
        }
    };
    let deletions = mechanisms
        .iter()
        .map(|m| {
            ScramCredentialDeletion::default()
                .with_name(StrBytes::from_string(name.to_string()))
                .with_mechanism(*m)
        })
        .collect();
    let response =
        kafka.call(&AlterUserScramCredentialsRequest::default().with_deletions(deletions))?;
    if let (Some(mechanism), Some(result)) = (mechanism, response.results.first()) {
        if result.error_code == ResponseError::ResourceNotFound.code() {
            bail!("user {name} has no {mechanism} credential");
        }
    }
    check_alter(&response, name, "cannot delete user")?;
    let names: Vec<String> = mechanisms.iter().map(|m| mechanism_name(*m)).collect();
    println!("deleted user {name} ({})", names.join(", "));
    Ok(())
}

fn check_alter(
    response: &AlterUserScramCredentialsResponse,
    name: &str,
    doing: &str,
) -> Result<()> {
    for result in &response.results {
        if let Some(error) = broker_error(result.error_code, result.error_message.as_ref()) {
            bail!("{doing} {name}: {error}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_is_the_first_line_of_stdin_without_its_line_ending() {
        assert_eq!(read_password(&b"s3cret\nignored\n"[..]).unwrap(), "s3cret");
        assert_eq!(read_password(&b"s3cret\r\n"[..]).unwrap(), "s3cret");
        assert_eq!(read_password(&b" spaced \n"[..]).unwrap(), " spaced ");
        assert_eq!(read_password(&b"no newline"[..]).unwrap(), "no newline");
        assert_eq!(read_password(&b""[..]).unwrap(), "");
    }

    #[test]
    fn mechanisms_are_scram_only() {
        assert_eq!(parse_mechanism("scram-sha-256"), Ok(ScramMechanism::Sha256));
        assert_eq!(parse_mechanism("SCRAM-SHA-512"), Ok(ScramMechanism::Sha512));
        assert!(parse_mechanism("PLAIN").is_err());
        assert_eq!(mechanism_name(2), "SCRAM-SHA-512");
        assert_eq!(mechanism_name(0), "UNKNOWN(0)");
    }
}
