//! The LDAP connector (OpenLDAP, Active Directory): one connection per read, a simple bind, and
//! paged searches for users and groups.
//!
//! Every search carries the Simple Paged Results control (RFC 2696), so a server's size limit
//! never cuts a read short; a search that still ends early (a limit, a referral, a lost
//! connection, any result other than success) fails the whole read, so that the cycle stops
//! before planning and nobody is deprovisioned because of a partial read.

mod ad;
mod entry;
mod links;
mod lookup;
mod ranges;
mod tls;

use self::entry::{Converter, Entry};
use self::ranges::RangeReader;
use super::{Directory, Source, SourceError, SourceObject};
use crate::config::LdapSourceConfig;
use crate::secret;
use ldap3::controls::{Control, ControlType, PagedResults};
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, LdapError, LdapResult, ResultEntry, Scope};
use std::time::Duration;

/// How long to wait for the TCP connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait for any one answer (a bind, a page, a range).
const OPERATION_TIMEOUT: Duration = Duration::from_secs(120);

pub struct LdapSource {
    config: LdapSourceConfig,
    convert: Converter,
}

impl LdapSource {
    pub fn new(config: LdapSourceConfig) -> Self {
        let convert = Converter::new(&config.attributes, &config.group_attributes);
        Self { config, convert }
    }

    fn error(&self, message: impl Into<String>) -> SourceError {
        SourceError::Ldap {
            url: self.config.url.clone(),
            message: message.into(),
        }
    }

    fn uses_tls(&self) -> bool {
        self.config.starttls || self.config.url.to_ascii_lowercase().starts_with("ldaps:")
    }

    /// Connects: TCP, then TLS or StartTLS. The session is not bound yet, and works only
    /// inside [`drive`] with the connection returned next to it.
    async fn connect(&self) -> Result<(Session<'_>, LdapConnAsync), SourceError> {
        let url = reqwest::Url::parse(&self.config.url)
            .map_err(|e| self.error(format!("not a URL: {e}")))?;
        let ldaps = url.scheme() == "ldaps";
        let host = url
            .host_str()
            .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_owned())
            .ok_or_else(|| self.error("the URL names no host"))?;
        let port = url.port().unwrap_or(if ldaps { 636 } else { 389 });
        if self.uses_tls() && self.config.tls_insecure {
            tracing::warn!(url = %self.config.url, "TLS certificate verification is off (tls_insecure = true): anyone on the network path can pose as the directory and read the bind password.");
        }

        // The TCP connection is made here, apart from the TLS handshake, so that "unreachable"
        // and "TLS failed" are told apart.
        let tcp = match tokio::time::timeout(
            CONNECT_TIMEOUT,
            tokio::net::TcpStream::connect((host.as_str(), port)),
        )
        .await
        {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(e)) => {
                return Err(self.error(format!(
                    "the LDAP server is unreachable: cannot connect to {host}:{port}: {e}"
                )))
            }
            Err(_) => {
                return Err(self.error(format!(
                    "the LDAP server is unreachable: no answer from {host}:{port} within {} s",
                    CONNECT_TIMEOUT.as_secs()
                )))
            }
        };
        let tcp = tcp
            .into_std()
            .map_err(|e| self.error(format!("cannot use the connection to {host}:{port}: {e}")))?;
        let mut settings = LdapConnSettings::new()
            .set_conn_timeout(CONNECT_TIMEOUT)
            .set_std_stream(ldap3::StdStream::Tcp(tcp))
            .set_starttls(self.config.starttls && !ldaps);
        if self.uses_tls() {
            let tls = tls::tls_config(&self.config).map_err(|e| self.error(e))?;
            settings = settings
                .set_config(tls)
                .set_no_tls_verify(self.config.tls_insecure);
        }
        let (conn, ldap) = LdapConnAsync::with_settings(settings, &self.config.url)
            .await
            .map_err(|e| self.error(self.connect_error(&host, e)))?;
        Ok((Session { source: self, ldap }, conn))
    }

    /// Says which step of connecting failed: TLS, StartTLS or the connection itself.
    fn connect_error(&self, host: &str, e: LdapError) -> String {
        let tls_hint = if self.config.tls_insecure {
            ""
        } else {
            " (is the server certificate signed by a CA in the system store or ca_file, and issued for this host name?)"
        };
        match e {
            LdapError::Io { source } => match source
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            {
                Some(tls) => format!("TLS handshake with {host} failed: {tls}{tls_hint}"),
                None if self.uses_tls() => format!(
                    "TLS handshake with {host} failed: {source} (does the server speak TLS on this port?)"
                ),
                None => format!("the connection to {host} failed: {source}"),
            },
            LdapError::LdapResult { result } => {
                format!("StartTLS refused by the server: {}", describe(&result))
            }
            LdapError::Rustls { source } => {
                format!("TLS handshake with {host} failed: {source}{tls_hint}")
            }
            LdapError::DNSName { .. } => format!(
                "TLS: {host:?} is not a valid name to check the server certificate against"
            ),
            other => format!("cannot open the LDAP connection to {host}: {other}"),
        }
    }
}

#[async_trait::async_trait]
impl Source for LdapSource {
    async fn read(&self) -> Result<Directory, SourceError> {
        let c = &self.config;
        let user_attrs = self.convert.user_attrs();
        let group_attrs = self.convert.group_attrs();
        let (mut session, conn) = self.connect().await?;
        // Users are converted page by page during the read; groups at the end, since their
        // members are resolved against every user.
        let mut building = self.convert.building();
        let groups = drive(conn, async {
            session.bind().await?;
            session
                .search(
                    "users",
                    "user_filter",
                    c.users_base_dn(),
                    c.user_filter(),
                    &user_attrs,
                    |page| building.users(&page).map_err(|e| self.error(e.to_string())),
                )
                .await?;
            let mut groups = Vec::new();
            session
                .search(
                    "groups",
                    "group_filter",
                    c.groups_base_dn(),
                    c.group_filter(),
                    &group_attrs,
                    |page| {
                        groups.extend(page);
                        Ok(())
                    },
                )
                .await?;
            for group in groups.iter_mut().filter(|g| !g.pending.is_empty()) {
                ranges::complete_ranges(group, &mut session).await?;
            }
            session.close().await;
            Ok::<_, SourceError>(groups)
        })
        .await?;
        let dir = building
            .finish(&groups)
            .map_err(|e| self.error(e.to_string()))?;
        tracing::debug!(
            users = dir.users.len(),
            groups = dir.groups.len(),
            "Read the LDAP directory."
        );
        Ok(dir)
    }

    fn describe(&self) -> String {
        format!(
            "ldap directory {} ({})",
            self.config.url, self.config.base_dn
        )
    }

    /// One search for the user whose objectId, mail, userPrincipalName or mailNickname is
    /// `key`, and one more for the user its `manager` names (see [`LdapSource::lookup`]).
    async fn find_user(&self, key: &str) -> Result<Option<SourceObject>, SourceError> {
        self.lookup(key).await
    }
}

/// One bound connection.
struct Session<'a> {
    source: &'a LdapSource,
    ldap: Ldap,
}

/// Runs `work` while driving the connection in the same task, rather than in a task of its
/// own: the entries are then decoded and dropped on one thread, which spares the allocator the
/// frees of blocks allocated on another thread. Dropping the connection once `work` is done
/// changes nothing: `work` ends with an unbind, which closes it.
async fn drive<T>(conn: LdapConnAsync, work: impl std::future::Future<Output = T>) -> T {
    let driver = async move {
        if let Err(e) = conn.drive().await {
            tracing::debug!(error = %e, "The LDAP connection ended with an error.");
        }
    };
    tokio::pin!(driver, work);
    tokio::select! {
        out = &mut work => out,
        // The connection ended first: the operations under way fail on their own.
        () = &mut driver => work.await,
    }
}

impl Session<'_> {
    /// The simple bind, where a bind DN is configured.
    async fn bind(&mut self) -> Result<(), SourceError> {
        let source = self.source;
        if let Some(dn) = &source.config.bind_dn {
            let password = secret::read(
                source.config.bind_password_file.as_deref(),
                source.config.bind_password_env.as_deref(),
            )
            .map_err(|e| source.error(format!("bind password for {dn:?}: {e}")))?;
            let result = self
                .ldap
                .with_timeout(OPERATION_TIMEOUT)
                .simple_bind(dn, password.expose())
                .await
                .map_err(|e| source.error(format!("bind as {dn:?} failed: {}", op_error(e))))?;
            if result.rc != 0 {
                return Err(source.error(format!("bind as {dn:?} failed: {}", describe(&result))));
            }
        }
        Ok(())
    }

    /// A subtree search, page by page, until the server says the result is complete. Any page
    /// that does not end in success fails the search. Each page goes to `on_page` once the
    /// request for the next one is on its way, so that the server prepares that page while
    /// this one is decoded and converted. Returns the number of entries.
    async fn search(
        &mut self,
        what: &str,
        filter_key: &str,
        base: &str,
        filter: &str,
        attrs: &[String],
        mut on_page: impl FnMut(Vec<Entry>) -> Result<(), SourceError>,
    ) -> Result<usize, SourceError> {
        let source = self.source;
        let failed = |e: LdapError| match e {
            LdapError::FilterParsing => source.error(format!(
                "{filter_key} {filter:?} is not a valid LDAP filter (RFC 4515)"
            )),
            e => source.error(format!(
                "reading {what} under {base:?} failed: {}; nothing was planned",
                op_error(e)
            )),
        };
        let page_size = i32::try_from(source.config.page_size()).unwrap_or(i32::MAX);
        let mut entries = 0;
        let mut cookie = Vec::new();
        // The last page received, not decoded yet.
        let mut received: Option<Vec<ResultEntry>> = None;
        loop {
            let control = PagedResults {
                size: page_size,
                cookie: std::mem::take(&mut cookie),
            };
            // Returns once the request is sent.
            let mut stream = self
                .ldap
                .with_controls(control)
                .with_timeout(OPERATION_TIMEOUT)
                .streaming_search(base, Scope::Subtree, filter, attrs)
                .await
                .map_err(failed)?;
            if let Some(page) = received.take() {
                on_page(decode_page(source, what, base, page)?)?;
            }
            let mut page = Vec::new();
            while let Some(e) = stream.next().await.map_err(failed)? {
                page.push(e);
            }
            let result = stream.finish().await;
            if result.rc != 0 {
                return Err(source.error(format!(
                    "reading {what} under {base:?} ended early after {} entries: {}{}; nothing was planned",
                    entries + page.len(),
                    describe(&result),
                    hint(&result)
                )));
            }
            if !result.refs.is_empty() {
                return Err(source.error(format!(
                    "reading {what} under {base:?} returned referrals to {}, which scimsync does not follow; set the base DN to a naming context this server holds. Nothing was planned",
                    result.refs.join(", ")
                )));
            }
            entries += page
                .iter()
                .filter(|e| !e.is_ref() && !e.is_intermediate())
                .count();
            received = Some(page);
            let next = result.ctrls.iter().find_map(|c| match c {
                Control(Some(ControlType::PagedResults), raw) => {
                    Some(raw.parse::<PagedResults>().cookie)
                }
                _ => None,
            });
            match next {
                Some(next) if !next.is_empty() => cookie = next,
                // An empty cookie: the last page. No control at all: the server ignored
                // paging (it is not critical) and sent everything in one successful answer.
                _ => break,
            }
        }
        if let Some(page) = received {
            on_page(decode_page(source, what, base, page)?)?;
        }
        tracing::debug!(what, base, entries, "Read LDAP entries.");
        Ok(entries)
    }

    async fn close(mut self) {
        // The read is complete; an unbind that fails changes nothing.
        let _ = self.ldap.unbind().await;
    }
}

/// The entries of one page (references and intermediate messages left out).
fn decode_page(
    source: &LdapSource,
    what: &str,
    base: &str,
    page: Vec<ResultEntry>,
) -> Result<Vec<Entry>, SourceError> {
    page.into_iter()
        .filter(|e| !e.is_ref() && !e.is_intermediate())
        .map(|e| {
            Entry::from_result(e).ok_or_else(|| {
                source.error(format!(
                    "reading {what} under {base:?} failed: the server sent an entry that is not valid BER; nothing was planned"
                ))
            })
        })
        .collect()
}

#[async_trait::async_trait]
impl RangeReader for Session<'_> {
    async fn read_range(&mut self, dn: &str, attr: &str) -> Result<Entry, SourceError> {
        let result = self
            .ldap
            .with_timeout(OPERATION_TIMEOUT)
            .search(dn, Scope::Base, "(objectClass=*)", vec![attr])
            .await
            .map_err(|e| {
                self.source
                    .error(format!("reading {attr} of {dn:?} failed: {}", op_error(e)))
            })?;
        let ldap3::SearchResult(mut page, result) = result;
        if result.rc != 0 {
            return Err(self.source.error(format!(
                "reading {attr} of {dn:?} failed: {}; nothing was planned",
                describe(&result)
            )));
        }
        match page.pop() {
            Some(e) => Entry::from_result(e).ok_or_else(|| {
                self.source.error(format!(
                    "reading {attr} of {dn:?} failed: the server sent an entry that is not valid BER"
                ))
            }),
            None => Err(self
                .source
                .error(format!("reading {attr} of {dn:?} returned no entry"))),
        }
    }

    fn no_progress(&self, message: String) -> SourceError {
        self.source.error(message)
    }
}

/// A result code by name and number, with the server's diagnostic text.
fn describe(r: &LdapResult) -> String {
    // ldap3 prints "rc=49 (invalidCredentials), dn: …, text: …"; keep the name.
    let shown = r.to_string();
    let name = shown
        .split_once('(')
        .and_then(|(_, rest)| rest.split_once(')'))
        .map(|(n, _)| n)
        .unwrap_or("error");
    let mut out = format!("{name} ({})", r.rc);
    if !r.text.trim().is_empty() {
        out.push_str(&format!(": {}", r.text.trim()));
    }
    out
}

fn hint(r: &LdapResult) -> &'static str {
    match r.rc {
        3 => " (the server's time limit for this account)",
        4 => " (the server's size limit for this account; page_size must not exceed it)",
        11 => " (an administrative limit; lower page_size)",
        _ => "",
    }
}

/// An operation that did not get a result: the connection, a timeout, the protocol.
fn op_error(e: LdapError) -> String {
    match e {
        LdapError::Timeout { .. } => format!("no answer within {} s", OPERATION_TIMEOUT.as_secs()),
        LdapError::EndOfStream | LdapError::OpSend { .. } | LdapError::ResultRecv { .. } => {
            "the connection was lost".to_owned()
        }
        LdapError::Io { source } => format!("the connection was lost: {source}"),
        LdapError::LdapResult { result } => describe(&result),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_codes_read_by_name_with_the_diagnostic() {
        let r = LdapResult {
            rc: 49,
            matched: String::new(),
            text: "80090308: LdapErr: DSID-0C09042A, data 52e".into(),
            refs: vec![],
            ctrls: vec![],
        };
        assert_eq!(
            describe(&r),
            "invalidCredentials (49): 80090308: LdapErr: DSID-0C09042A, data 52e"
        );
        let r = LdapResult {
            rc: 4,
            text: String::new(),
            ..r
        };
        assert_eq!(describe(&r), "sizeLimitExceeded (4)");
    }
}
