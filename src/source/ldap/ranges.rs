//! Active Directory's ranged attributes (`member;range=1500-*`): the remaining parts of a
//! large group read until it is complete.

use super::entry::Entry;
use crate::source::SourceError;

/// Reads one more part of a ranged attribute of one entry (a base-scope search for
/// `member;range=1500-*`).
#[async_trait::async_trait]
pub(crate) trait RangeReader: Send {
    async fn read_range(&mut self, dn: &str, attr: &str) -> Result<Entry, SourceError>;
    /// The error for a server that answers without progress.
    fn no_progress(&self, message: String) -> SourceError;
}

/// Reads the remaining parts of every ranged attribute of an entry, so that a group of more
/// than 1,500 members (Active Directory's MaxValRange) is complete.
pub(crate) async fn complete_ranges(
    entry: &mut Entry,
    reader: &mut dyn RangeReader,
) -> Result<(), SourceError> {
    while let Some(range) = entry.pending.pop() {
        let Some(request) = range.next_request() else {
            continue;
        };
        let part = reader.read_range(&entry.dn, &request).await?;
        // A part that does not move forward would make this loop forever.
        if part
            .pending
            .iter()
            .any(|r| r.attr == range.attr && r.start <= range.start)
        {
            return Err(reader.no_progress(format!(
                "{}: the server answered {request} with an earlier range; {} is incomplete",
                entry.dn, range.attr
            )));
        }
        entry.absorb(part, &range.attr);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::ldap::ad::Range;

    /// Active Directory as it answers ranged requests for a group of `total` members, with
    /// MaxValRange = 1500.
    struct FakeAd {
        total: usize,
        requests: Vec<String>,
    }

    #[async_trait::async_trait]
    impl RangeReader for FakeAd {
        async fn read_range(&mut self, dn: &str, attr: &str) -> Result<Entry, SourceError> {
            self.requests.push(attr.to_owned());
            let r = Range::parse(attr).expect("a ranged request");
            let start = r.start as usize;
            let end = (start + 1500).min(self.total);
            let name = if end == self.total {
                format!("member;range={start}-*")
            } else {
                format!("member;range={start}-{}", end - 1)
            };
            let values: Vec<String> = (start..end).map(|i| format!("cn=u{i},dc=x")).collect();
            Ok(Entry::new(dn, [(name, values)]))
        }
        fn no_progress(&self, message: String) -> SourceError {
            SourceError::Unsupported(message)
        }
    }

    #[tokio::test]
    async fn a_group_of_more_than_1500_members_is_read_completely() {
        let first: Vec<String> = (0..1500).map(|i| format!("cn=u{i},dc=x")).collect();
        let mut e = Entry::new("CN=Big,DC=x", [("member;range=0-1499", first)]);
        let mut ad = FakeAd {
            total: 4000,
            requests: Vec::new(),
        };
        complete_ranges(&mut e, &mut ad).await.expect("complete");
        assert_eq!(ad.requests, ["member;range=1500-*", "member;range=3000-*"]);
        let members = e.values("member");
        assert_eq!(members.len(), 4000);
        assert_eq!(members[3999], b"cn=u3999,dc=x");
        assert!(e.pending.is_empty());
    }
}
