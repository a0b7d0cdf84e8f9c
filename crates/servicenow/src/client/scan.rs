//! Keyset scans: reading a table in `(sys_updated_on, sys_id)` order, page after page,
//! resuming after the last row seen (see [`nowstream_model::table_api::query`] for why not offsets).
//!
//! Two ServiceNow behaviours shape the loop:
//!
//! - Row ACLs filter rows *after* `sysparm_limit` is applied, so a page can come back short
//!   or even empty while rows remain. The scan therefore ends only when no rows remain *by
//!   count* (`X-Total-Count` of the keyset query, else the `Link` header's `next`), never
//!   because a page was short. A short page simply continues from its last row, and the
//!   next keyset query's own count says whether anything is left. An empty
//!   page with rows remaining means every row of that window was hidden; since there is no
//!   row to move the cursor to, the next request stays in the same keyset window and skips
//!   the hidden rows with `sysparm_offset`.
//! - Heavy queries hit the REST transaction quota ("Transaction cancelled: maximum execution
//!   time exceeded"). The page size is halved (down to [`ClientConfig::min_page_size`]) and
//!   the same page is asked again; at the floor the page is retried with backoff like any
//!   transient failure.
//! - A response body over [`ClientConfig::max_response_bytes`] (long journals with
//!   `display_value=all`) is not read further. The same page is asked again with half the
//!   rows, down to one; a single row whose response alone is over the limit cannot be read at
//!   all, so its keys are asked for alone (`sysparm_fields=sys_id,sys_updated_on`, same
//!   keyset window, limit 1) and the page reports it in [`ScanPage::oversized`], with the
//!   cursor past it. The page size then goes back to what it was.
//!
//! [`ClientConfig::min_page_size`]: super::ClientConfig::min_page_size
//! [`ClientConfig::max_response_bytes`]: super::ClientConfig::max_response_bytes

use std::borrow::Cow;
use std::cmp::Ordering;

use chrono::{DateTime, SubsecRound, Utc};
use serde_json::{Map, Value};

use super::retry::{Retrier, RetryReason};
use super::{Client, ClientError, ListReply, ListRequest, OnCancel};
use crate::row::Row;
use nowstream_model::table_api::query::{SYS_ID, UPDATED_ON, compare_values, keyset};
use nowstream_model::table_api::{FieldShape, TimeError, format_time, parse_time, read_field};

/// Position in a keyset scan: the last row read. Both parts come from the rows' stored
/// `value`s (UTC), never from display values (user's zone and format).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Cursor {
    /// `sys_updated_on` of the last row, whole seconds (ServiceNow's resolution).
    pub updated_on: DateTime<Utc>,
    /// `sys_id` of the last row, breaking ties within one second.
    pub sys_id: String,
}

/// A record whose cursor fields cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CursorError {
    #[error(
        "record has no `{field}.value` (was it fetched without sysparm_display_value=all, or \
         without the field in sysparm_fields?)"
    )]
    MissingValue { field: &'static str },
    #[error("record field `{field}` is empty")]
    Empty { field: &'static str },
    #[error("record field `sys_updated_on`: {0}")]
    Time(#[from] TimeError),
}

impl Cursor {
    /// A cursor at `updated_on` (sub-second parts dropped) and `sys_id`.
    pub fn new(updated_on: DateTime<Utc>, sys_id: impl Into<String>) -> Self {
        Cursor {
            updated_on: updated_on.trunc_subsecs(0),
            sys_id: sys_id.into(),
        }
    }

    /// A cursor from a stored `sys_updated_on` value (`yyyy-MM-dd HH:mm:ss`, UTC).
    pub fn parse(updated_on: &str, sys_id: impl Into<String>) -> Result<Self, TimeError> {
        Ok(Cursor::new(parse_time(updated_on)?, sys_id))
    }

    /// The cursor of a record fetched with `sysparm_display_value=all`: from
    /// `sys_updated_on.value` and `sys_id.value`.
    pub fn from_record(record: &Map<String, Value>) -> Result<Self, CursorError> {
        let updated_on = stored_value(record, UPDATED_ON)?;
        let sys_id = stored_value(record, SYS_ID)?;
        Ok(Cursor::new(parse_time(&updated_on)?, sys_id))
    }

    /// `sys_updated_on` as ServiceNow writes it in values and queries.
    pub fn updated_on_value(&self) -> String {
        format_time(self.updated_on)
    }

    /// Order of rows in a keyset scan: by time, then by sys_id compared the way the query
    /// language compares values.
    pub fn scan_order(&self, other: &Cursor) -> Ordering {
        self.updated_on
            .cmp(&other.updated_on)
            .then_with(|| compare_values(Some(&self.sys_id), Some(&other.sys_id)))
    }
}

/// Whether `cursor` may follow `previous` in a scan. sys_ids are compared both as plain
/// strings (how the database orders the GUID column) and as the query language compares
/// values (numbers before text): an all-digit sys_id is the one case where they differ, and
/// a false alarm here would stop a table's scan for good.
fn comes_after(cursor: &Cursor, previous: &Cursor) -> bool {
    match cursor.updated_on.cmp(&previous.updated_on) {
        Ordering::Greater => true,
        Ordering::Less => false,
        Ordering::Equal => {
            cursor.sys_id > previous.sys_id
                || compare_values(Some(&cursor.sys_id), Some(&previous.sys_id)) == Ordering::Greater
        }
    }
}

/// The stored value of a cursor field, which must have the `sysparm_display_value=all`
/// shape: a plain value means the request lost its parameters, and reading on would mix
/// stored values and display values without noticing.
fn stored_value<'a>(
    record: &'a Map<String, Value>,
    field: &'static str,
) -> Result<Cow<'a, str>, CursorError> {
    let read = read_field(record, field)
        .ok()
        .filter(|read| read.shape == FieldShape::Pair)
        .ok_or(CursorError::MissingValue { field })?;
    read.value.ok_or(CursorError::Empty { field })
}

/// Where a scan starts.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ScanStart {
    /// The whole table.
    #[default]
    Beginning,
    /// Rows updated at or after this time (a first poll, or an overlap window).
    Since(DateTime<Utc>),
    /// Rows after this cursor (resuming from a checkpoint).
    After(Cursor),
}

/// What to scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanRequest {
    pub table: String,
    pub start: ScanStart,
    /// Extra encoded query ANDed with the keyset condition (e.g. `active=true`).
    pub filter: Option<String>,
    /// `sysparm_fields`; `sys_id` and `sys_updated_on` are added when missing, since the
    /// cursor needs them. `None` fetches every field.
    pub fields: Option<Vec<String>>,
    /// Page size for this scan; `None` uses the client's.
    pub page_size: Option<usize>,
}

impl ScanRequest {
    /// The whole of `table`.
    pub fn new(table: impl Into<String>) -> Self {
        ScanRequest {
            table: table.into(),
            start: ScanStart::Beginning,
            filter: None,
            fields: None,
            page_size: None,
        }
    }

    /// Start at rows updated at or after `since`.
    pub fn since(mut self, since: DateTime<Utc>) -> Self {
        self.start = ScanStart::Since(since);
        self
    }

    /// Resume after `cursor`.
    pub fn after(mut self, cursor: Cursor) -> Self {
        self.start = ScanStart::After(cursor);
        self
    }

    /// AND an encoded query into every page's query.
    pub fn filter(mut self, filter: impl Into<String>) -> Self {
        self.filter = Some(filter.into()).filter(|f: &String| !f.is_empty());
        self
    }

    /// Fetch only these fields (plus the cursor fields).
    pub fn fields<I, S>(mut self, fields: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.fields = Some(fields.into_iter().map(Into::into).collect());
        self
    }

    /// Use this page size instead of the client's.
    pub fn page_size(mut self, page_size: usize) -> Self {
        self.page_size = Some(page_size);
        self
    }
}

/// A row whose Table API response alone was larger than `max_response_bytes`: only its keys
/// could be read. The scan's cursor is past it; the caller decides what to do (the fetcher
/// dead-letters it).
#[derive(Debug, Clone, PartialEq)]
pub struct OversizedRecord {
    /// The row's `sys_id` and `sys_updated_on`, shaped like a `display_value=all` record.
    pub keys: Map<String, Value>,
    /// The limit its response exceeded, in bytes.
    pub limit: u64,
}

/// One page of a scan.
#[derive(Debug, Clone, PartialEq)]
pub struct ScanPage {
    /// Records in scan order, exactly as returned. Empty only when the page is one row too
    /// large to read, reported in `oversized`.
    pub records: Vec<Row>,
    /// Rows of this page that could not be read because their response alone was over
    /// `max_response_bytes` (at most one, with `records` empty).
    pub oversized: Vec<OversizedRecord>,
    /// The cursor after this page: checkpoint it once the records are safely stored.
    pub cursor: Cursor,
    /// Rows of the keyset window after this page by `X-Total-Count` (before row ACLs;
    /// rows changing meanwhile move it), when the instance sent a count.
    pub remaining: Option<u64>,
    /// The `sysparm_limit` this page was fetched with (smaller than configured after a
    /// cancelled transaction).
    pub page_size: usize,
}

/// A scan in progress. Call [`KeysetScan::next_page`] until it returns `Ok(None)`.
///
/// A failed `next_page` leaves the scan where it was, so calling it again retries the same
/// page; dropping the scan and starting a new one from the last page's cursor is equivalent.
#[derive(Debug)]
pub struct KeysetScan {
    client: Client,
    table: String,
    filter: Option<String>,
    fields: Option<Vec<String>>,
    /// `sys_updated_on>=since`, until the first row is read.
    since: Option<String>,
    cursor: Option<Cursor>,
    /// Rows to skip inside the current keyset window: all rows there so far were hidden.
    offset: usize,
    page_size: usize,
    /// The page size the scan started with: restored after an oversized row was stepped over.
    initial_page_size: usize,
    min_page_size: usize,
    finished: bool,
}

impl KeysetScan {
    pub(crate) fn new(client: Client, request: ScanRequest, min_page_size: usize) -> Self {
        let page_size = request
            .page_size
            .unwrap_or(client.page_size())
            .max(min_page_size)
            .max(1);
        let (since, cursor) = match request.start {
            ScanStart::Beginning => (None, None),
            ScanStart::Since(time) => (Some(format_time(time)), None),
            ScanStart::After(cursor) => (None, Some(cursor)),
        };
        let fields = request.fields.map(|mut fields| {
            for needed in [SYS_ID, UPDATED_ON] {
                if !fields.iter().any(|f| f == needed) {
                    fields.push(needed.to_owned());
                }
            }
            fields
        });
        KeysetScan {
            client,
            table: request.table,
            filter: request.filter,
            fields,
            since,
            cursor,
            offset: 0,
            page_size,
            initial_page_size: page_size,
            min_page_size: min_page_size.max(1),
            finished: false,
        }
    }

    /// The cursor after the last page returned (or the starting cursor).
    pub fn cursor(&self) -> Option<&Cursor> {
        self.cursor.as_ref()
    }

    /// The page size the next request will use.
    pub fn page_size(&self) -> usize {
        self.page_size
    }

    /// Whether the scan has read every row.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// The encoded query of the next request.
    pub fn next_query(&self) -> String {
        let updated_on = self.cursor.as_ref().map(Cursor::updated_on_value);
        let after = self
            .cursor
            .as_ref()
            .zip(updated_on.as_deref())
            .map(|(cursor, updated_on)| (updated_on, cursor.sys_id.as_str()));
        keyset(after, self.since.as_deref(), self.filter.as_deref())
    }

    /// The next non-empty page, or `None` once no rows remain.
    pub async fn next_page(&mut self) -> Result<Option<ScanPage>, ClientError> {
        loop {
            if self.finished {
                return Ok(None);
            }
            let request = ListRequest {
                table: self.table.clone(),
                query: self.next_query(),
                limit: self.page_size,
                offset: self.offset,
                fields: self.fields.clone(),
            };
            let on_cancel = if self.page_size > self.min_page_size {
                OnCancel::Return
            } else {
                OnCancel::Retry
            };
            let page = match self.client.fetch_list(&request, on_cancel).await {
                Ok(ListReply::Page(page)) => page,
                Ok(ListReply::Cancelled(message)) => {
                    self.halve_page_size(&request, message)?;
                    continue;
                }
                Err(ClientError::ResponseTooLarge { limit, .. }) if request.limit > 1 => {
                    let halved = (request.limit / 2).max(1);
                    tracing::warn!(
                        table = %self.table,
                        from = request.limit,
                        to = halved,
                        limit_bytes = limit,
                        "response over max_response_bytes; asking for half the page"
                    );
                    self.page_size = halved;
                    continue;
                }
                Err(ClientError::ResponseTooLarge { limit, .. }) => {
                    match self.step_over_oversized(&request, limit).await? {
                        Some(page) => return Ok(Some(page)),
                        None => continue,
                    }
                }
                Err(error) => return Err(error),
            };
            let more = page.rows_remain_after(request.offset, request.limit);
            if page.records.is_empty() {
                if more == Some(true) {
                    // Every row of this window is hidden from us: step over them without
                    // moving the cursor (there is no row to move it to).
                    self.offset = self.offset.saturating_add(request.limit);
                    tracing::debug!(
                        table = %self.table,
                        offset = self.offset,
                        "empty page while rows remain (row ACLs); skipping ahead"
                    );
                    continue;
                }
                // No rows remain, or the instance sent no count and an empty page is the
                // only end signal there is.
                self.finished = true;
                return Ok(None);
            }
            let cursor = self.check_order(&request, &page.records)?;
            self.cursor = Some(cursor.clone());
            self.since = None;
            self.offset = 0;
            // A full page ends the scan when the count says nothing lies beyond it. A short
            // page never does: the rows it lacks may be hidden (and stay hidden) or may have
            // been withheld for this request only, so the next keyset query from the new
            // cursor decides, by its own count.
            let full = page.records.len() >= request.limit;
            self.finished = full && more == Some(false);
            let remaining = page.total.map(|total| {
                total.saturating_sub(
                    u64::try_from(request.offset.saturating_add(request.limit)).unwrap_or(u64::MAX),
                )
            });
            return Ok(Some(ScanPage {
                records: page.records,
                oversized: Vec::new(),
                cursor,
                remaining,
                page_size: request.limit,
            }));
        }
    }

    /// The one row of `request` (limit 1) is too large to read: reads its keys alone, in the
    /// same keyset window, and moves the cursor past it. `None` when the row is gone or hidden
    /// by now (the next request simply goes on).
    async fn step_over_oversized(
        &mut self,
        request: &ListRequest,
        limit: u64,
    ) -> Result<Option<ScanPage>, ClientError> {
        let keys_request = ListRequest {
            fields: Some(vec![SYS_ID.to_owned(), UPDATED_ON.to_owned()]),
            ..request.clone()
        };
        let page = match self
            .client
            .fetch_list(&keys_request, OnCancel::Retry)
            .await?
        {
            ListReply::Page(page) => page,
            ListReply::Cancelled(message) => {
                return Err(ClientError::BadResponse {
                    request: self.client.list_context(&keys_request)?,
                    reason: message,
                });
            }
        };
        let more = page.rows_remain_after(keys_request.offset, keys_request.limit);
        let Some(row) = page.records.into_iter().next() else {
            return Ok(None);
        };
        let cursor = self.check_order(&keys_request, std::slice::from_ref(&row))?;
        let keys = match row.to_map() {
            Ok(keys) => keys,
            Err(e) => {
                return Err(ClientError::BadResponse {
                    request: self.client.list_context(&keys_request)?,
                    reason: format!("result[0]: {e}"),
                });
            }
        };
        tracing::warn!(
            table = %self.table,
            sys_id = %cursor.sys_id,
            limit_bytes = limit,
            "one record's response is over max_response_bytes; stepping over it"
        );
        self.cursor = Some(cursor.clone());
        self.since = None;
        self.offset = 0;
        self.page_size = self.initial_page_size;
        self.finished = more == Some(false);
        let remaining = page.total.map(|total| {
            total.saturating_sub(
                u64::try_from(keys_request.offset.saturating_add(1)).unwrap_or(u64::MAX),
            )
        });
        Ok(Some(ScanPage {
            records: Vec::new(),
            oversized: vec![OversizedRecord { keys, limit }],
            cursor,
            remaining,
            page_size: 1,
        }))
    }

    fn halve_page_size(
        &mut self,
        request: &ListRequest,
        message: String,
    ) -> Result<(), ClientError> {
        let halved = (self.page_size / 2).max(self.min_page_size);
        tracing::warn!(
            table = %self.table,
            from = self.page_size,
            to = halved,
            "ServiceNow cancelled the transaction; halving the page size"
        );
        let context = self.client.list_context(request)?;
        Retrier::new(self.client.retry_policy(), &context).report_immediate(
            RetryReason::TransactionCancelled,
            format!("{message} (page size {} -> {halved})", self.page_size),
        );
        self.page_size = halved;
        Ok(())
    }

    /// The cursor after `records`, checking that each row comes strictly after the one
    /// before (and after the starting cursor): a server that ignored the ORDER BY or the
    /// keyset condition would otherwise make the scan loop or skip rows silently.
    fn check_order(&self, request: &ListRequest, records: &[Row]) -> Result<Cursor, ClientError> {
        let request_context = self.client.list_context(request)?;
        let context = || request_context.clone();
        let mut previous = self.cursor.clone();
        for (i, row) in records.iter().enumerate() {
            let keys = row
                .select(&[SYS_ID, UPDATED_ON])
                .map_err(|e| ClientError::BadResponse {
                    request: context(),
                    reason: format!("result[{i}]: {e}"),
                })?;
            let cursor = Cursor::from_record(&keys).map_err(|e| ClientError::BadResponse {
                request: context(),
                reason: format!("result[{i}]: {e}"),
            })?;
            if let Some(previous) = &previous {
                if !comes_after(&cursor, previous) {
                    return Err(ClientError::BadResponse {
                        request: context(),
                        reason: format!(
                            "result[{i}] ({} {}) does not come after ({} {}): the instance did \
                             not apply the keyset order",
                            cursor.updated_on_value(),
                            cursor.sys_id,
                            previous.updated_on_value(),
                            previous.sys_id
                        ),
                    });
                }
            }
            previous = Some(cursor);
        }
        previous.ok_or_else(|| ClientError::BadResponse {
            request: context(),
            reason: "empty page where records were expected".to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use serde_json::json;

    use super::*;

    fn record(
        updated_on_value: &str,
        updated_on_display: &str,
        sys_id: &str,
    ) -> Map<String, Value> {
        let value = json!({
            "sys_id": {"value": sys_id, "display_value": sys_id},
            "sys_updated_on": {"value": updated_on_value, "display_value": updated_on_display},
            "number": {"value": "INC0010001", "display_value": "INC0010001"}
        });
        match value {
            Value::Object(map) => map,
            _ => unreachable!(),
        }
    }

    #[test]
    fn the_cursor_comes_from_stored_values_not_display_values() {
        let r = record("2024-03-05 12:00:00", "03/05/2024 07:00:00 AM", "abc");
        let cursor = Cursor::from_record(&r).unwrap();
        assert_eq!(
            cursor.updated_on,
            Utc.with_ymd_and_hms(2024, 3, 5, 12, 0, 0).unwrap()
        );
        assert_eq!(cursor.updated_on_value(), "2024-03-05 12:00:00");
        assert_eq!(cursor.sys_id, "abc");
    }

    #[test]
    fn a_record_without_display_value_all_shape_is_an_error_naming_the_field() {
        let r = json!({"sys_id": "abc", "sys_updated_on": "2024-03-05 12:00:00"});
        let Value::Object(r) = r else { unreachable!() };
        let err = Cursor::from_record(&r).unwrap_err();
        assert_eq!(err, CursorError::MissingValue { field: UPDATED_ON });
        assert!(
            err.to_string().contains("sysparm_display_value=all"),
            "{err}"
        );
    }

    #[test]
    fn a_display_formatted_time_in_value_is_refused() {
        let r = record("03/05/2024 07:00:00 AM", "x", "abc");
        assert!(matches!(Cursor::from_record(&r), Err(CursorError::Time(_))));
    }

    #[test]
    fn cursors_order_by_time_then_sys_id() {
        let t = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap();
        let a = Cursor::new(t, "a0");
        let b = Cursor::new(t, "b0");
        let later = Cursor::new(t + chrono::Duration::seconds(1), "00");
        assert_eq!(a.scan_order(&b), Ordering::Less);
        assert_eq!(later.scan_order(&b), Ordering::Greater);
        assert_eq!(a.scan_order(&a.clone()), Ordering::Equal);
    }

    #[test]
    fn an_all_digit_sys_id_may_follow_a_hex_one_in_either_collation() {
        let t = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap();
        let hex = Cursor::new(t, "0abc");
        let digits = Cursor::new(t, "1111");
        assert!(comes_after(&digits, &hex), "string order");
        assert!(comes_after(&hex, &digits), "query-language order");
        assert!(!comes_after(&hex, &hex.clone()));
        let earlier = Cursor::new(t - chrono::Duration::seconds(1), "ffff");
        assert!(!comes_after(&earlier, &hex));
    }

    #[test]
    fn cursors_drop_sub_second_parts() {
        let t = Utc.timestamp_millis_opt(1_700_000_000_999).unwrap();
        assert_eq!(
            Cursor::new(t, "x").updated_on_value(),
            "2023-11-14 22:13:20"
        );
    }

    fn scan(request: ScanRequest) -> KeysetScan {
        let config = super::super::ClientConfig::new(
            url::Url::parse("https://acme.service-now.com").unwrap(),
            super::super::Auth::Basic {
                username: "u".to_owned(),
                password: secrecy::SecretString::from("p"),
            },
        );
        Client::new(config).unwrap().scan(request)
    }

    #[test]
    fn the_first_query_starts_at_since_and_later_ones_at_the_cursor() {
        let since = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap();
        let mut s = scan(
            ScanRequest::new("incident")
                .since(since)
                .filter("active=true"),
        );
        assert_eq!(
            s.next_query(),
            "sys_updated_on>=2024-01-01 00:00:00^active=true^ORDERBYsys_updated_on^ORDERBYsys_id"
        );
        s.cursor = Some(Cursor::parse("2024-01-02 03:04:05", "abc").unwrap());
        s.since = None;
        assert_eq!(
            s.next_query(),
            "sys_updated_on>2024-01-02 03:04:05^active=true^NQsys_updated_on=2024-01-02 03:04:05\
             ^sys_id>abc^active=true^ORDERBYsys_updated_on^ORDERBYsys_id"
        );
    }

    #[test]
    fn requested_fields_always_include_the_cursor_fields() {
        let s = scan(ScanRequest::new("incident").fields(["number", "sys_id"]));
        assert_eq!(
            s.fields.as_deref().unwrap(),
            ["number", "sys_id", "sys_updated_on"]
        );
    }

    #[test]
    fn records_out_of_keyset_order_are_reported() {
        let s = scan(ScanRequest::new("incident"));
        let request = ListRequest {
            table: "incident".to_owned(),
            query: s.next_query(),
            limit: 10,
            offset: 0,
            fields: None,
        };
        let records = [
            Row::from_map(&record("2024-01-01 00:00:01", "x", "b")),
            Row::from_map(&record("2024-01-01 00:00:01", "x", "a")),
        ];
        let err = s.check_order(&request, &records).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("result[1]"), "{text}");
        assert!(text.contains("table incident"), "{text}");
        let ordered = [
            Row::from_map(&record("2024-01-01 00:00:01", "x", "a")),
            Row::from_map(&record("2024-01-01 00:00:01", "x", "b")),
        ];
        assert_eq!(s.check_order(&request, &ordered).unwrap().sys_id, "b");
    }
}
