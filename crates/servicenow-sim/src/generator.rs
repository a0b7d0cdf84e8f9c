//! Deterministic, realistic-looking ServiceNow data.
//!
//! Everything comes from one ChaCha stream seeded by [`GeneratorConfig::seed`] and from a fixed
//! `data_end` instant (never the wall clock), so the same seed and counts give the same data on
//! every machine. Timestamps respect the states: `opened_at ≤ resolved_at ≤ closed_at ≤
//! sys_updated_on ≤ data_end`, and resolved incidents carry `resolved_at`, `resolved_by` and
//! `close_code`.

use chrono::{DateTime, Duration, TimeZone, Utc};
use nowstream_model::table_api::{format_time, parse_time, tables};
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Deserialize;

use crate::config::{ConfigError, DEFAULT_TIME_ZONE};
use crate::schema::{self, CMDB_CI_SERVICE, CMN_DEPARTMENT, FieldKind};
use crate::store::{Dataset, Record, field, priority_of};

/// What to generate.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GeneratorConfig {
    /// Seed of the random stream: same seed and counts ⇒ same data.
    pub seed: u64,
    /// Number of incidents.
    pub incidents: usize,
    /// Number of change requests.
    pub change_requests: usize,
    /// Number of ordinary users (on top of the configured accounts).
    pub users: usize,
    /// The first N incidents all get `sys_updated_on` = `data_end` exactly, so one second
    /// holds N rows: the case that breaks timestamp-only cursors.
    pub same_second: usize,
    /// Latest instant any generated record is updated at; records spread back from here.
    pub data_end: DateTime<Utc>,
    /// How far back incidents and changes are opened, in days.
    pub history_days: u32,
    /// Whether `sys_dictionary` lists the base columns of incident and change_request. Off,
    /// it lists only the custom `u_*` fields, as an instance does where the columns are
    /// defined higher in the hierarchy or dictionary ACLs hide them: a client that asks only
    /// for the columns the dictionary shows then gets nothing else.
    pub dictionary_base_fields: bool,
    /// `glide.sys.default.tz` in `sys_properties`: the zone of users whose `time_zone` is
    /// empty.
    pub system_time_zone: String,
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        Self {
            seed: 42,
            incidents: 200,
            change_requests: 50,
            users: 30,
            same_second: 0,
            data_end: Utc
                .with_ymd_and_hms(2025, 1, 1, 0, 0, 0)
                .single()
                .unwrap_or_default(),
            history_days: 180,
            dictionary_base_fields: true,
            system_time_zone: DEFAULT_TIME_ZONE.to_owned(),
        }
    }
}

impl GeneratorConfig {
    /// Check the counts fit together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.same_second > self.incidents {
            return Err(ConfigError {
                field: "data.same_second".to_owned(),
                reason: format!(
                    "{} exceeds the number of incidents ({})",
                    self.same_second, self.incidents
                ),
            });
        }
        if self.history_days == 0 {
            return Err(ConfigError {
                field: "data.history_days".to_owned(),
                reason: "must be at least 1".to_owned(),
            });
        }
        Ok(())
    }
}

/// A configured login account the generator must create a `sys_user` (and roles) for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// Login name.
    pub user_name: String,
    /// Display name.
    pub name: String,
    /// Role names.
    pub roles: Vec<String>,
    /// `sys_user.time_zone`; empty for the system default.
    pub time_zone: String,
}

const SECONDS_PER_DAY: i64 = 86_400;

/// Base columns added after the simulator's data was first fixed: their dictionary rows are
/// generated last ([`Generator::late_dictionary_rows`]), so every record generated before
/// them keeps its sys_id and values for a given seed.
const LATE_COLUMNS: [(&str, &str); 1] = [(tables::INCIDENT, "caused_by")];

/// Change states in which a change has been (or is being) put in place, and so can have
/// caused an incident: implement, review, closed.
const IMPLEMENTED_CHANGE_STATES: [&str; 3] = ["-1", "0", "3"];

/// How long after a change's window opened an incident may still be blamed on it.
const FAILURE_WINDOW_DAYS: i64 = 3;

/// Chance that an incident opened within [`FAILURE_WINDOW_DAYS`] of a change was caused by one.
const FAILURE_SHARE: f64 = 0.15;

/// `sys_user.employee_number` of the `index`th ordinary user: six digits, as an HR system
/// numbers staff; every eighth user (a contractor) has none, so empty values flow too.
fn employee_number(index: usize) -> String {
    if index % 8 == 7 {
        String::new()
    } else {
        format!("{:06}", 100_001 + index)
    }
}

const FIRST_NAMES: [&str; 32] = [
    "Abel", "Beth", "Carlos", "Dana", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jonas", "Kara",
    "Luis", "Mira", "Nadia", "Omar", "Priya", "Quinn", "Rosa", "Sven", "Tara", "Umar", "Vera",
    "Wen", "Xavier", "Yara", "Zane", "Aiko", "Bruno", "Chloe", "Dmitri", "Esra", "Felix",
];
const LAST_NAMES: [&str; 32] = [
    "Tuter",
    "Anglin",
    "Mendez",
    "Okafor",
    "Novak",
    "Haddad",
    "Lindqvist",
    "Tanaka",
    "Ferreira",
    "Keller",
    "Osei",
    "Romero",
    "Patel",
    "Kowalski",
    "Nguyen",
    "Schmidt",
    "Moreau",
    "Rossi",
    "Jensen",
    "Costa",
    "Ibrahim",
    "Larsen",
    "Dubois",
    "Sato",
    "Murphy",
    "Fischer",
    "Silva",
    "Popescu",
    "Yilmaz",
    "Andersen",
    "Kim",
    "Brennan",
];
const TITLES: [&str; 8] = [
    "Service Desk Analyst",
    "Systems Engineer",
    "Network Engineer",
    "Database Administrator",
    "Software Engineer",
    "Account Manager",
    "Financial Analyst",
    "HR Partner",
];
const DEPARTMENTS: [(&str, &str); 8] = [
    ("IT", "IT"),
    ("Engineering", "ENG"),
    ("Finance", "FIN"),
    ("Human Resources", "HR"),
    ("Sales", "SALES"),
    ("Customer Support", "SUP"),
    ("Marketing", "MKT"),
    ("Legal", "LEG"),
];
const GROUPS: [&str; 8] = [
    "Service Desk",
    "Network",
    "Database",
    "Application Support",
    "Hardware",
    "Software",
    "Security Operations",
    "Change Management",
];
const SERVICES: [(&str, usize); 10] = [
    ("Email", 0),
    ("VPN", 0),
    ("Payroll", 2),
    ("Customer Portal", 5),
    ("CRM", 4),
    ("Billing", 2),
    ("Build Pipeline", 1),
    ("Recruiting Platform", 3),
    ("Web Analytics", 6),
    ("Contract Repository", 7),
];
const ROLES: [(&str, &str); 7] = [
    ("admin", "System administrator"),
    ("itil", "ITIL fulfiller"),
    ("itil_admin", "ITIL administrator"),
    ("personalize_choices", "Can personalize choice lists"),
    ("personalize_dictionary", "Can personalize the dictionary"),
    ("user_admin", "User administrator"),
    ("snc_internal", "Internal user"),
];
const INCIDENT_PROBLEMS: [(&str, &str); 12] = [
    ("software", "is not loading"),
    ("software", "throws an error on login"),
    ("software", "is very slow"),
    ("network", "is unreachable"),
    ("network", "drops connections"),
    ("hardware", "laptop will not boot"),
    ("hardware", "printer jam on floor 3"),
    ("database", "queries time out"),
    ("database", "replication lag alert"),
    ("inquiry", "how do I request access?"),
    ("inquiry", "password reset needed"),
    ("software", "returns HTTP 500"),
];
const CLOSE_CODES: [(&str, u32); 8] = [
    ("Solution provided", 40),
    ("Workaround provided", 15),
    ("Resolved by change", 10),
    ("Resolved by problem", 8),
    ("Resolved by caller", 10),
    ("Duplicate", 5),
    ("Known error", 7),
    ("User error", 5),
];
const ROOT_CAUSES: [&str; 8] = [
    "Expired certificate",
    "Misconfigured load balancer",
    "Disk full on application host",
    "Bad deployment rolled back",
    "Upstream provider outage",
    "Database lock contention",
    "User permissions missing",
    "Memory leak in service",
];
const CHANGE_SUMMARIES: [&str; 8] = [
    "Upgrade {} to the latest release",
    "Patch {} servers",
    "Migrate {} database",
    "Rotate TLS certificates for {}",
    "Scale out {} cluster",
    "Decommission legacy {} nodes",
    "Apply security hardening to {}",
    "Change {} firewall rules",
];

/// Generate a full dataset: reference data, the configured accounts, users, incidents and
/// change requests.
pub fn generate(config: &GeneratorConfig, accounts: &[Account]) -> Dataset {
    let mut g = Generator {
        rng: ChaCha8Rng::seed_from_u64(config.seed),
        config: config.clone(),
        setup_time: config.data_end - Duration::days(i64::from(config.history_days) + 60),
        data: Dataset::default(),
    };
    let departments = g.departments();
    let people = g.users(accounts, &departments);
    g.set_department_heads(&departments, &people);
    let groups = g.groups(&people);
    let services = g.services(&departments, &people);
    g.roles(accounts, &people);
    g.choices();
    g.dictionary();
    let pools = Pools {
        people,
        groups,
        services,
    };
    g.incidents(&pools);
    g.change_requests(&pools);
    // Last, so the random stream of everything above is what it always was.
    g.journal_dictionary_rows();
    g.properties();
    // Later additions still, for the same reason: a seed gives the records it always gave,
    // now with these links.
    g.late_dictionary_rows();
    g.link_failures_to_changes();
    g.table_definitions();
    g.data
}

#[derive(Debug, Clone)]
struct Person {
    sys_id: String,
    user_name: String,
    /// Holds the itil role: can be assigned work.
    agent: bool,
    /// A configured login account (integration, admin): never a caller or assignee.
    account: bool,
}

struct Pools {
    people: Vec<Person>,
    groups: Vec<String>,
    services: Vec<String>,
}

impl Pools {
    fn agents(&self) -> Vec<Person> {
        self.people.iter().filter(|p| p.agent).cloned().collect()
    }

    /// People who raise tickets: everyone but the login accounts.
    fn requesters(&self) -> Vec<Person> {
        self.people.iter().filter(|p| !p.account).cloned().collect()
    }
}

struct Generator {
    rng: ChaCha8Rng,
    config: GeneratorConfig,
    /// When reference data (groups, choices, …) was "created".
    setup_time: DateTime<Utc>,
    data: Dataset,
}

impl Generator {
    fn sys_id(&mut self) -> String {
        format!("{:032x}", self.rng.random::<u128>())
    }

    /// A fresh record with the platform fields set.
    fn record(
        &mut self,
        created: DateTime<Utc>,
        updated: DateTime<Utc>,
        by: &str,
        mod_count: u32,
    ) -> Record {
        let mut r = Record::new();
        r.insert("sys_id".to_owned(), self.sys_id());
        r.insert("sys_created_on".to_owned(), format_time(created));
        r.insert("sys_created_by".to_owned(), by.to_owned());
        r.insert("sys_updated_on".to_owned(), format_time(updated));
        r.insert("sys_updated_by".to_owned(), by.to_owned());
        r.insert("sys_mod_count".to_owned(), mod_count.to_string());
        r
    }

    fn setup_record(&mut self) -> Record {
        let t = self.setup_time;
        self.record(t, t, "admin", 0)
    }

    fn push(&mut self, table: &str, mut record: Record) -> String {
        // Every row carries every base field, as a real table would (empty when unset).
        if let Some(schema) = schema::all_tables().into_iter().find(|s| s.name == table) {
            for f in &schema.fields {
                record.entry(f.name.clone()).or_default();
            }
        }
        let id = record.get("sys_id").cloned().unwrap_or_default();
        self.data
            .tables
            .entry(table.to_owned())
            .or_default()
            .push(record);
        id
    }

    fn set(record: &mut Record, pairs: &[(&str, &str)]) {
        for (k, v) in pairs {
            record.insert((*k).to_owned(), (*v).to_owned());
        }
    }

    fn pick<T: Copy + Default>(&mut self, weighted: &[(T, u32)]) -> T {
        weighted
            .choose_weighted(&mut self.rng, |(_, w)| *w)
            .map(|(t, _)| *t)
            .unwrap_or_default()
    }

    fn one_of<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        items.choose(&mut self.rng)
    }

    fn seconds(&mut self, lo: i64, hi: i64) -> i64 {
        if hi <= lo {
            lo
        } else {
            self.rng.random_range(lo..=hi)
        }
    }

    /// Log-uniform duration in seconds: as many fixes take minutes as take weeks.
    fn log_uniform(&mut self, lo: i64, hi: i64) -> i64 {
        let lo = lo.max(1) as f64;
        let hi = (hi as f64).max(lo + 1.0);
        self.rng.random_range(lo.ln()..hi.ln()).exp().round() as i64
    }

    fn departments(&mut self) -> Vec<String> {
        DEPARTMENTS
            .iter()
            .map(|(name, code)| {
                let mut r = self.setup_record();
                Self::set(
                    &mut r,
                    &[
                        ("name", name),
                        ("id", code),
                        ("description", &format!("{name} department")),
                    ],
                );
                self.push(CMN_DEPARTMENT, r)
            })
            .collect()
    }

    fn users(&mut self, accounts: &[Account], departments: &[String]) -> Vec<Person> {
        let mut people = Vec::new();
        let it_department = departments.first().cloned().unwrap_or_default();
        for account in accounts {
            let mut r = self.setup_record();
            let email = format!("{}@example.com", account.user_name);
            Self::set(
                &mut r,
                &[
                    ("user_name", &account.user_name),
                    ("name", &account.name),
                    ("first_name", &account.name),
                    ("email", &email),
                    ("title", "Integration account"),
                    ("department", &it_department),
                    ("active", "true"),
                    ("locked_out", "false"),
                    ("time_zone", &account.time_zone),
                ],
            );
            let sys_id = self.push(tables::SYS_USER, r);
            // Login accounts (integration, admin) never get tickets assigned.
            people.push(Person {
                sys_id,
                user_name: account.user_name.clone(),
                agent: false,
                account: true,
            });
        }
        let mut taken: std::collections::BTreeSet<String> =
            accounts.iter().map(|a| a.user_name.clone()).collect();
        for i in 0..self.config.users {
            let first = *self.one_of(&FIRST_NAMES).unwrap_or(&"Alex");
            let last = *self.one_of(&LAST_NAMES).unwrap_or(&"Doe");
            let base = format!("{}.{}", first.to_lowercase(), last.to_lowercase());
            let mut user_name = base.clone();
            let mut n = 2;
            while taken.contains(&user_name) {
                user_name = format!("{base}{n}");
                n += 1;
            }
            taken.insert(user_name.clone());
            let created = self.setup_time + Duration::minutes(i as i64);
            let mut r = self.record(created, created, "admin", 0);
            let department = self.one_of(departments).cloned().unwrap_or_default();
            let title = *self.one_of(&TITLES).unwrap_or(&"Engineer");
            let manager = if people.len() > accounts.len() && self.rng.random_bool(0.7) {
                self.one_of(&people[accounts.len()..])
                    .map(|p| p.sys_id.clone())
                    .unwrap_or_default()
            } else {
                String::new()
            };
            let active = if self.rng.random_bool(0.95) {
                "true"
            } else {
                "false"
            };
            let employee_number = employee_number(i);
            Self::set(
                &mut r,
                &[
                    ("user_name", &user_name),
                    ("name", &format!("{first} {last}")),
                    ("first_name", first),
                    ("last_name", last),
                    ("email", &format!("{user_name}@example.com")),
                    ("employee_number", &employee_number),
                    ("title", title),
                    ("department", &department),
                    ("manager", &manager),
                    ("active", active),
                    ("locked_out", "false"),
                    ("time_zone", DEFAULT_TIME_ZONE),
                ],
            );
            let sys_id = self.push(tables::SYS_USER, r);
            // Roughly 60% of users work tickets; always at least the first one.
            let agent = i == 0 || self.rng.random_bool(0.6);
            people.push(Person {
                sys_id,
                user_name,
                agent,
                account: false,
            });
        }
        people
    }

    fn set_department_heads(&mut self, departments: &[String], people: &[Person]) {
        let Some(rows) = self.data.tables.get_mut(CMN_DEPARTMENT) else {
            return;
        };
        for (row, head) in rows.iter_mut().zip(people.iter().rev().cycle()) {
            if departments.contains(row.get("sys_id").unwrap_or(&String::new())) {
                row.insert("dept_head".to_owned(), head.sys_id.clone());
            }
        }
    }

    fn groups(&mut self, people: &[Person]) -> Vec<String> {
        GROUPS
            .iter()
            .map(|name| {
                let mut r = self.setup_record();
                let manager = self
                    .one_of(people)
                    .map(|p| p.sys_id.clone())
                    .unwrap_or_default();
                let email = format!("{}@example.com", name.to_lowercase().replace(' ', "-"));
                Self::set(
                    &mut r,
                    &[
                        ("name", name),
                        ("description", &format!("{name} team")),
                        ("email", &email),
                        ("manager", &manager),
                        ("active", "true"),
                    ],
                );
                self.push(tables::SYS_USER_GROUP, r)
            })
            .collect()
    }

    fn services(&mut self, departments: &[String], people: &[Person]) -> Vec<String> {
        SERVICES
            .iter()
            .map(|(name, dept)| {
                let mut r = self.setup_record();
                let owner = self
                    .one_of(people)
                    .map(|p| p.sys_id.clone())
                    .unwrap_or_default();
                let department = departments.get(*dept).cloned().unwrap_or_default();
                let criticality = self.pick(&[
                    ("1 - most critical", 2),
                    ("2 - somewhat critical", 5),
                    ("3 - less critical", 3),
                ]);
                Self::set(
                    &mut r,
                    &[
                        ("name", name),
                        ("department", &department),
                        ("owned_by", &owner),
                        ("busines_criticality", criticality),
                        ("operational_status", "1"),
                    ],
                );
                self.push(CMDB_CI_SERVICE, r)
            })
            .collect()
    }

    fn roles(&mut self, accounts: &[Account], people: &[Person]) {
        let mut role_ids: Vec<(String, String)> = Vec::new();
        let extra: Vec<String> = accounts
            .iter()
            .flat_map(|a| a.roles.iter())
            .filter(|r| !ROLES.iter().any(|(name, _)| name == *r))
            .cloned()
            .collect();
        let all: Vec<(String, String)> = ROLES
            .iter()
            .map(|(n, d)| ((*n).to_owned(), (*d).to_owned()))
            .chain(extra.into_iter().map(|n| (n.clone(), format!("{n} role"))))
            .collect();
        for (name, description) in all {
            if role_ids.iter().any(|(n, _)| *n == name) {
                continue;
            }
            let mut r = self.setup_record();
            let elevated = if name == "admin" { "true" } else { "false" };
            Self::set(
                &mut r,
                &[
                    ("name", &name),
                    ("description", &description),
                    ("elevated_privilege", elevated),
                ],
            );
            let id = self.push(tables::SYS_USER_ROLE, r);
            role_ids.push((name, id));
        }
        let role_id = |name: &str| {
            role_ids
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, id)| id.clone())
        };
        let mut grants: Vec<(String, String)> = Vec::new();
        for (account, person) in accounts.iter().zip(people) {
            for role in &account.roles {
                if let Some(id) = role_id(role) {
                    grants.push((person.sys_id.clone(), id));
                }
            }
        }
        for person in people.iter().skip(accounts.len()) {
            if let Some(id) = role_id("snc_internal") {
                grants.push((person.sys_id.clone(), id));
            }
            match role_id("itil") {
                Some(id) if person.agent => grants.push((person.sys_id.clone(), id)),
                _ => {}
            }
        }
        for (user, role) in grants {
            let mut r = self.setup_record();
            Self::set(
                &mut r,
                &[
                    ("user", &user),
                    ("role", &role),
                    ("state", "active"),
                    ("inherited", "false"),
                ],
            );
            self.push(tables::SYS_USER_HAS_ROLE, r);
        }
    }

    fn choices(&mut self) {
        for (table, element, values) in choice_lists() {
            for (i, (value, label)) in values.iter().enumerate() {
                let mut r = self.setup_record();
                let sequence = (i * 100).to_string();
                Self::set(
                    &mut r,
                    &[
                        ("name", table),
                        ("element", element),
                        ("value", value),
                        ("label", label),
                        ("sequence", &sequence),
                        ("language", "en"),
                        ("inactive", "false"),
                    ],
                );
                self.push(tables::SYS_CHOICE, r);
            }
        }
    }

    /// `sys_dictionary` rows of incident and change_request: every schema column but the
    /// journal columns (which a real instance defines on `task`, see
    /// [`Self::journal_dictionary_rows`]) and the custom fields.
    fn dictionary(&mut self) {
        let choice_fields: Vec<(&str, &str)> =
            choice_lists().iter().map(|(t, e, _)| (*t, *e)).collect();
        for table in [tables::INCIDENT, tables::CHANGE_REQUEST] {
            let Some(schema) = schema::all_tables().into_iter().find(|s| s.name == table) else {
                continue;
            };
            let wanted = |name: &str| {
                !schema::JOURNAL_FIELDS.contains(&name) && !LATE_COLUMNS.contains(&(table, name))
            };
            let base = schema.fields.iter().filter(|f| wanted(&f.name)).map(|f| {
                let (internal_type, reference) = match &f.kind {
                    FieldKind::Text => ("string", String::new()),
                    FieldKind::Integer => ("integer", String::new()),
                    FieldKind::Boolean => ("boolean", String::new()),
                    FieldKind::DateTime => ("glide_date_time", String::new()),
                    FieldKind::Reference(target) => ("reference", target.clone()),
                };
                (
                    f.name.clone(),
                    column_label(&f.name),
                    internal_type.to_owned(),
                    reference,
                    "40",
                )
            });
            let custom = custom_fields(table)
                .into_iter()
                .map(|(e, label, kind, len)| {
                    (
                        e.to_owned(),
                        label.to_owned(),
                        kind.to_owned(),
                        String::new(),
                        len,
                    )
                });
            let listed_base = self.config.dictionary_base_fields;
            let rows: Vec<_> = base.filter(|_| listed_base).chain(custom).collect();
            for (element, label, internal_type, reference, max_length) in rows {
                let mut r = self.setup_record();
                let choice = if choice_fields
                    .iter()
                    .any(|(t, e)| (*t == table || *t == tables::TASK) && *e == element)
                {
                    "3"
                } else {
                    "0"
                };
                Self::set(
                    &mut r,
                    &[
                        ("name", table),
                        ("element", &element),
                        ("column_label", &label),
                        ("internal_type", &internal_type),
                        ("max_length", max_length),
                        ("reference", &reference),
                        ("choice", choice),
                        ("mandatory", "false"),
                        ("read_only", "false"),
                        ("active", "true"),
                    ],
                );
                self.push(tables::SYS_DICTIONARY, r);
            }
        }
    }

    /// Dictionary rows of task's journal fields (`comments`, `work_notes`): a real instance
    /// lists them on `task`, the table that defines them (see [`schema::JOURNAL_FIELDS`]).
    fn journal_dictionary_rows(&mut self) {
        if !self.config.dictionary_base_fields {
            return;
        }
        for (element, label) in [
            ("comments", "Additional comments"),
            ("work_notes", "Work notes"),
        ] {
            let mut r = self.setup_record();
            Self::set(
                &mut r,
                &[
                    ("name", tables::TASK),
                    ("element", element),
                    ("column_label", label),
                    ("internal_type", "journal_input"),
                    ("max_length", "4000"),
                    ("choice", "0"),
                    ("mandatory", "false"),
                    ("read_only", "false"),
                    ("active", "true"),
                ],
            );
            self.push(tables::SYS_DICTIONARY, r);
        }
    }

    /// Dictionary rows of the [`LATE_COLUMNS`], generated after everything else.
    fn late_dictionary_rows(&mut self) {
        if !self.config.dictionary_base_fields {
            return;
        }
        for (table, element) in LATE_COLUMNS {
            let Some(field) = schema::all_tables()
                .into_iter()
                .find(|s| s.name == table)
                .and_then(|s| s.field(element).cloned())
            else {
                continue;
            };
            let (internal_type, reference) = match &field.kind {
                FieldKind::Reference(target) => ("reference", target.clone()),
                FieldKind::Text => ("string", String::new()),
                FieldKind::Integer => ("integer", String::new()),
                FieldKind::Boolean => ("boolean", String::new()),
                FieldKind::DateTime => ("glide_date_time", String::new()),
            };
            let mut r = self.setup_record();
            Self::set(
                &mut r,
                &[
                    ("name", table),
                    ("element", element),
                    ("column_label", &column_label(element)),
                    ("internal_type", internal_type),
                    ("max_length", "32"),
                    ("reference", &reference),
                    ("choice", "0"),
                    ("mandatory", "false"),
                    ("read_only", "false"),
                    ("active", "true"),
                ],
            );
            self.push(tables::SYS_DICTIONARY, r);
        }
    }

    /// Points a share of incidents at the change request that caused them (`caused_by`), as
    /// a change manager does after a failed change: only changes already being implemented
    /// or done ([`IMPLEMENTED_CHANGE_STATES`]) whose window started in the
    /// [`FAILURE_WINDOW_DAYS`] before the incident was opened, and more often a change closed
    /// unsuccessful or with issues. With the default counts that links 5–10 % of incidents, to
    /// about a fifth of the changes: a change failure rate in DORA's usual range.
    fn link_failures_to_changes(&mut self) {
        let changes: Vec<(String, DateTime<Utc>, u32)> = self
            .data
            .tables
            .get(tables::CHANGE_REQUEST)
            .into_iter()
            .flatten()
            .filter(|change| IMPLEMENTED_CHANGE_STATES.contains(&field(change, "state")))
            .filter_map(|change| {
                let started = parse_time(field(change, "start_date")).ok()?;
                let weight = match field(change, "close_code") {
                    "unsuccessful" => 8,
                    "successful_issues" => 4,
                    _ => 1,
                };
                Some((field(change, "sys_id").to_owned(), started, weight))
            })
            .collect();
        let window = Duration::days(FAILURE_WINDOW_DAYS);
        let incident_count = self.data.tables.get(tables::INCIDENT).map_or(0, Vec::len);
        for index in 0..incident_count {
            let Some(opened) = self.data.tables.get(tables::INCIDENT).and_then(|rows| {
                rows.get(index)
                    .and_then(|row| parse_time(field(row, "opened_at")).ok())
            }) else {
                continue;
            };
            let candidates: Vec<(&str, u32)> = changes
                .iter()
                .filter(|(_, started, _)| *started < opened && opened - *started <= window)
                .map(|(sys_id, _, weight)| (sys_id.as_str(), *weight))
                .collect();
            if candidates.is_empty() || !self.rng.random_bool(FAILURE_SHARE) {
                continue;
            }
            let cause = self.pick(&candidates).to_owned();
            if let Some(row) = self
                .data
                .tables
                .get_mut(tables::INCIDENT)
                .and_then(|rows| rows.get_mut(index))
            {
                row.insert("caused_by".to_owned(), cause);
            }
        }
    }

    /// System properties a client may look for (`glide.sys.default.tz`).
    fn properties(&mut self) {
        let mut r = self.setup_record();
        let zone = self.config.system_time_zone.clone();
        Self::set(
            &mut r,
            &[
                ("name", "glide.sys.default.tz"),
                ("value", &zone),
                ("type", "timezone"),
                ("description", "System time zone"),
            ],
        );
        self.push(schema::SYS_PROPERTIES, r);
    }

    /// `sys_db_object` rows of the served tables, with `task` as the `super_class` of the
    /// tables that extend it: how a client learns which tables' columns a table inherits.
    fn table_definitions(&mut self) {
        let mut task_id = String::new();
        let schemas = schema::all_tables();
        let order = schemas
            .iter()
            .filter(|s| s.name == tables::TASK)
            .chain(schemas.iter().filter(|s| s.name != tables::TASK));
        for table in order {
            let mut r = self.setup_record();
            let parent = if schema::TASK_TABLES.contains(&table.name) {
                task_id.clone()
            } else {
                String::new()
            };
            Self::set(
                &mut r,
                &[
                    ("name", table.name),
                    ("label", table.name),
                    ("super_class", &parent),
                ],
            );
            let id = self.push(schema::SYS_DB_OBJECT, r);
            if table.name == tables::TASK {
                task_id = id;
            }
        }
    }

    fn incidents(&mut self, pools: &Pools) {
        let end = self.config.data_end;
        let horizon = i64::from(self.config.history_days) * SECONDS_PER_DAY;
        let agents = pools.agents();
        let requesters = pools.requesters();
        let mut ids: Vec<String> = Vec::new();
        for i in 0..self.config.incidents {
            let state = self.pick(&[
                ("1", 10),
                ("2", 15),
                ("3", 5),
                ("6", 20),
                ("7", 45),
                ("8", 5),
            ]);
            let urgency = self.pick(&[("1", 15), ("2", 35), ("3", 50)]);
            let impact = self.pick(&[("1", 15), ("2", 35), ("3", 50)]);
            let priority = priority_of(urgency, impact);
            let (ttr_lo, ttr_hi) = match priority.as_str() {
                "1" => (5 * 60, SECONDS_PER_DAY),
                "2" => (15 * 60, 3 * SECONDS_PER_DAY),
                "3" => (3600, 7 * SECONDS_PER_DAY),
                "4" => (2 * 3600, 14 * SECONDS_PER_DAY),
                _ => (4 * 3600, 28 * SECONDS_PER_DAY),
            };
            let ttr = self.log_uniform(ttr_lo, ttr_hi);
            let mut opened = end - Duration::seconds(self.seconds(120, horizon));
            let latest = end - Duration::seconds(1);
            let mut resolved = None;
            let mut closed = None;
            let updated = match state {
                "6" | "7" => {
                    let close_delay = if state == "7" {
                        self.seconds(3600, 7 * SECONDS_PER_DAY)
                    } else {
                        0
                    };
                    let needed = Duration::seconds(ttr + close_delay + 60);
                    if opened + needed > latest {
                        opened =
                            latest - needed - Duration::seconds(self.seconds(0, SECONDS_PER_DAY));
                    }
                    let r = opened + Duration::seconds(ttr);
                    resolved = Some(r);
                    let last = if state == "7" {
                        let c = r + Duration::seconds(close_delay);
                        closed = Some(c);
                        c
                    } else {
                        r
                    };
                    let room = (latest - last).num_seconds();
                    last + Duration::seconds(self.seconds(0, room.min(600)))
                }
                "1" => {
                    let room = (latest - opened).num_seconds();
                    opened + Duration::seconds(self.seconds(0, room.min(3600)))
                }
                "8" => {
                    let room = (latest - opened).num_seconds();
                    opened + Duration::seconds(self.seconds(0, room.min(2 * SECONDS_PER_DAY)))
                }
                _ => {
                    let room = (latest - opened).num_seconds();
                    opened + Duration::seconds(self.seconds(0, room))
                }
            };
            let updated = if i < self.config.same_second {
                end
            } else {
                updated.min(latest)
            };

            let caller = self.one_of(&requesters).cloned();
            let opener = if self.rng.random_bool(0.5) {
                caller.clone()
            } else {
                self.one_of(&agents).cloned()
            };
            let assignee = if state == "1" && self.rng.random_bool(0.5) {
                None
            } else {
                self.one_of(&agents).cloned()
            };
            let group = self.one_of(&pools.groups).cloned().unwrap_or_default();
            let service_index = self.rng.random_range(0..SERVICES.len());
            let service = pools
                .services
                .get(service_index)
                .cloned()
                .unwrap_or_default();
            let (category, problem) = *self
                .one_of(&INCIDENT_PROBLEMS)
                .unwrap_or(&("inquiry", "needs help"));
            let short_description = format!("{} {problem}", SERVICES[service_index].0);
            let opener_name = opener
                .as_ref()
                .map_or("admin".to_owned(), |p| p.user_name.clone());
            let updater_name = assignee
                .as_ref()
                .map_or(opener_name.clone(), |p| p.user_name.clone());
            let mod_count = if state == "1" {
                self.seconds(0, 1)
            } else {
                self.seconds(2, 20)
            } as u32;
            let mut r = self.record(opened, updated, &opener_name, mod_count);
            r.insert("sys_updated_by".to_owned(), updater_name);
            let sla_hours = match priority.as_str() {
                "1" => 4,
                "2" => 8,
                "3" => 72,
                "4" => 120,
                _ => 240,
            };
            let severity = self.pick(&[("1", 10), ("2", 25), ("3", 65)]);
            let contact = self.pick(&[
                ("phone", 30),
                ("email", 30),
                ("self-service", 30),
                ("walk-in", 5),
                ("chat", 5),
            ]);
            let escalation = if priority == "1" && self.rng.random_bool(0.5) {
                "2"
            } else {
                "0"
            };
            let customer_impact = match priority.as_str() {
                "1" => "high",
                "2" => self.pick(&[("high", 1), ("medium", 2)]),
                "3" => self.pick(&[("medium", 1), ("low", 2)]),
                _ => self.pick(&[("low", 1), ("none", 2)]),
            };
            let active = if matches!(state, "7" | "8") {
                "false"
            } else {
                "true"
            };
            let number = format!("INC{:07}", 10_001 + i);
            let id = |p: &Option<Person>| p.as_ref().map(|p| p.sys_id.clone()).unwrap_or_default();
            Self::set(
                &mut r,
                &[
                    ("number", &number),
                    ("short_description", &short_description),
                    (
                        "description",
                        &format!("Caller reports: {short_description}."),
                    ),
                    ("state", state),
                    ("priority", &priority),
                    ("urgency", urgency),
                    ("impact", impact),
                    ("severity", severity),
                    ("category", category),
                    ("contact_type", contact),
                    ("caller_id", &id(&caller)),
                    ("opened_by", &id(&opener)),
                    ("opened_at", &format_time(opened)),
                    ("assigned_to", &id(&assignee)),
                    ("assignment_group", &group),
                    ("business_service", &service),
                    ("escalation", escalation),
                    ("sla_due", &format_time(opened + Duration::hours(sla_hours))),
                    ("active", active),
                    (
                        "reopen_count",
                        if self.rng.random_bool(0.05) { "1" } else { "0" },
                    ),
                    ("sys_class_name", tables::INCIDENT),
                    ("u_customer_impact", customer_impact),
                    ("u_root_cause", ""),
                ],
            );
            if state == "3" {
                let reason = self.pick(&[("1", 4), ("3", 2), ("4", 3), ("5", 1)]);
                r.insert("hold_reason".to_owned(), reason.to_owned());
            }
            if let Some(resolved_at) = resolved {
                let resolver = assignee.clone().or_else(|| self.one_of(&agents).cloned());
                let close_code = self.pick(&CLOSE_CODES);
                let root_cause = *self.one_of(&ROOT_CAUSES).unwrap_or(&"Unknown");
                Self::set(
                    &mut r,
                    &[
                        ("resolved_at", &format_time(resolved_at)),
                        ("resolved_by", &id(&resolver)),
                        ("close_code", close_code),
                        ("close_notes", &format!("{close_code}: {root_cause}.")),
                        ("calendar_stc", &ttr.to_string()),
                        ("u_root_cause", root_cause),
                    ],
                );
                if let Some(closed_at) = closed {
                    Self::set(
                        &mut r,
                        &[
                            ("closed_at", &format_time(closed_at)),
                            ("closed_by", &id(&resolver)),
                        ],
                    );
                }
            }
            if !ids.is_empty() && self.rng.random_bool(0.05) {
                let parent = self.one_of(&ids).cloned().unwrap_or_default();
                Self::set(&mut r, &[("parent_incident", &parent), ("parent", &parent)]);
            }
            ids.push(self.push(tables::INCIDENT, r));
        }
    }

    fn change_requests(&mut self, pools: &Pools) {
        let end = self.config.data_end;
        let latest = end - Duration::seconds(1);
        let horizon = i64::from(self.config.history_days) * SECONDS_PER_DAY;
        let agents = pools.agents();
        let requesters = pools.requesters();
        for i in 0..self.config.change_requests {
            let state = self.pick(&[
                ("-5", 5),
                ("-4", 5),
                ("-3", 5),
                ("-2", 10),
                ("-1", 5),
                ("0", 5),
                ("3", 60),
                ("4", 5),
            ]);
            let kind = self.pick(&[("standard", 40), ("normal", 50), ("emergency", 10)]);
            let risk = self.pick(&[("1", 5), ("2", 15), ("3", 40), ("4", 40)]);
            let urgency = self.pick(&[("1", 15), ("2", 35), ("3", 50)]);
            let impact = self.pick(&[("1", 15), ("2", 35), ("3", 50)]);
            let mut opened = end - Duration::seconds(self.seconds(3600, horizon));
            let lead = self.seconds(3600, 14 * SECONDS_PER_DAY);
            let window = self.seconds(1800, 8 * 3600);
            let mut closed = None;
            let updated = if state == "3" {
                let settle = self.seconds(600, 2 * SECONDS_PER_DAY);
                let needed = Duration::seconds(lead + window + settle + 60);
                if opened + needed > latest {
                    opened = latest - needed - Duration::seconds(self.seconds(0, SECONDS_PER_DAY));
                }
                let c = opened + Duration::seconds(lead + window + settle);
                closed = Some(c);
                let room = (latest - c).num_seconds();
                c + Duration::seconds(self.seconds(0, room.min(600)))
            } else {
                let room = (latest - opened).num_seconds();
                opened + Duration::seconds(self.seconds(0, room.min(3 * SECONDS_PER_DAY)))
            };
            let start = opened + Duration::seconds(lead);
            let finish = start + Duration::seconds(window);
            let requester = self.one_of(&requesters).cloned();
            let assignee = self.one_of(&agents).cloned();
            let group = self.one_of(&pools.groups).cloned().unwrap_or_default();
            let service_index = self.rng.random_range(0..SERVICES.len());
            let service = pools
                .services
                .get(service_index)
                .cloned()
                .unwrap_or_default();
            let template = *self.one_of(&CHANGE_SUMMARIES).unwrap_or(&"Change {}");
            let short_description = template.replace("{}", SERVICES[service_index].0);
            let requester_name = requester
                .as_ref()
                .map_or("admin".to_owned(), |p| p.user_name.clone());
            let mod_count = if state == "3" {
                self.seconds(5, 30)
            } else {
                self.seconds(0, 8)
            } as u32;
            let mut r = self.record(opened, updated, &requester_name, mod_count);
            let approval = match state {
                "-5" | "-4" => "not requested",
                "-3" => "requested",
                "4" => "rejected",
                _ => "approved",
            };
            let score_range = match risk {
                "1" => (80, 100),
                "2" => (60, 79),
                "3" => (30, 59),
                _ => (0, 29),
            };
            let risk_score = self.seconds(score_range.0, score_range.1).to_string();
            let category = self.pick(&[
                ("software", 40),
                ("hardware", 20),
                ("network", 20),
                ("service", 10),
                ("other", 10),
            ]);
            let scope = self.pick(&[("3", 30), ("4", 50), ("5", 20)]);
            let active = if matches!(state, "3" | "4") {
                "false"
            } else {
                "true"
            };
            let number = format!("CHG{:07}", 30_001 + i);
            let id = |p: &Option<Person>| p.as_ref().map(|p| p.sys_id.clone()).unwrap_or_default();
            Self::set(
                &mut r,
                &[
                    ("number", &number),
                    ("short_description", &short_description),
                    (
                        "description",
                        &format!("Planned work: {short_description}."),
                    ),
                    ("state", state),
                    ("type", kind),
                    ("risk", risk),
                    ("urgency", urgency),
                    ("impact", impact),
                    ("priority", &priority_of(urgency, impact)),
                    ("category", category),
                    ("scope", scope),
                    ("approval", approval),
                    ("requested_by", &id(&requester)),
                    ("opened_by", &id(&requester)),
                    ("opened_at", &format_time(opened)),
                    ("assigned_to", &id(&assignee)),
                    ("assignment_group", &group),
                    ("business_service", &service),
                    ("start_date", &format_time(start)),
                    ("end_date", &format_time(finish)),
                    ("escalation", "0"),
                    ("active", active),
                    ("sys_class_name", tables::CHANGE_REQUEST),
                    ("u_risk_score", &risk_score),
                ],
            );
            if let Some(closed_at) = closed {
                let code = self.pick(&[
                    ("successful", 80),
                    ("successful_issues", 15),
                    ("unsuccessful", 5),
                ]);
                Self::set(
                    &mut r,
                    &[
                        ("closed_at", &format_time(closed_at)),
                        ("closed_by", &id(&assignee)),
                        ("close_code", code),
                        ("close_notes", "Implemented as planned."),
                    ],
                );
            }
            self.push(tables::CHANGE_REQUEST, r);
        }
    }
}

/// Custom fields: (element, label, internal_type, max_length).
fn custom_fields(table: &str) -> Vec<(&'static str, &'static str, &'static str, &'static str)> {
    match table {
        tables::INCIDENT => vec![
            ("u_customer_impact", "Customer impact", "string", "40"),
            ("u_root_cause", "Root cause", "string", "4000"),
        ],
        tables::CHANGE_REQUEST => vec![("u_risk_score", "Risk score", "integer", "40")],
        _ => Vec::new(),
    }
}

/// `short_description` → `Short description`, as ServiceNow labels columns.
fn column_label(element: &str) -> String {
    let text = element.replace('_', " ");
    let mut chars = text.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

type ChoiceList = (
    &'static str,
    &'static str,
    Vec<(&'static str, &'static str)>,
);

/// `sys_choice` content: (table, element, [(value, label)]).
fn choice_lists() -> Vec<ChoiceList> {
    let priority = vec![
        ("1", "1 - Critical"),
        ("2", "2 - High"),
        ("3", "3 - Moderate"),
        ("4", "4 - Low"),
        ("5", "5 - Planning"),
    ];
    let level = vec![("1", "1 - High"), ("2", "2 - Medium"), ("3", "3 - Low")];
    let mut lists = vec![
        (
            tables::INCIDENT,
            "state",
            vec![
                ("1", "New"),
                ("2", "In Progress"),
                ("3", "On Hold"),
                ("6", "Resolved"),
                ("7", "Closed"),
                ("8", "Canceled"),
            ],
        ),
        (tables::INCIDENT, "severity", level.clone()),
        (
            tables::INCIDENT,
            "category",
            vec![
                ("inquiry", "Inquiry / Help"),
                ("software", "Software"),
                ("hardware", "Hardware"),
                ("network", "Network"),
                ("database", "Database"),
            ],
        ),
        (
            tables::INCIDENT,
            "close_code",
            CLOSE_CODES.iter().map(|(c, _)| (*c, *c)).collect(),
        ),
        (
            tables::INCIDENT,
            "contact_type",
            vec![
                ("phone", "Phone"),
                ("email", "Email"),
                ("self-service", "Self-service"),
                ("walk-in", "Walk-in"),
                ("chat", "Chat"),
            ],
        ),
        (
            tables::INCIDENT,
            "hold_reason",
            vec![
                ("1", "Awaiting Caller"),
                ("3", "Awaiting Problem"),
                ("4", "Awaiting User Info"),
                ("5", "Awaiting Evidence"),
            ],
        ),
        (
            tables::INCIDENT,
            "u_customer_impact",
            vec![
                ("none", "None"),
                ("low", "Low"),
                ("medium", "Medium"),
                ("high", "High"),
            ],
        ),
        (
            tables::CHANGE_REQUEST,
            "state",
            vec![
                ("-5", "New"),
                ("-4", "Assess"),
                ("-3", "Authorize"),
                ("-2", "Scheduled"),
                ("-1", "Implement"),
                ("0", "Review"),
                ("3", "Closed"),
                ("4", "Canceled"),
            ],
        ),
        (
            tables::CHANGE_REQUEST,
            "type",
            vec![
                ("standard", "Standard"),
                ("normal", "Normal"),
                ("emergency", "Emergency"),
            ],
        ),
        (
            tables::CHANGE_REQUEST,
            "risk",
            vec![
                ("1", "Very High"),
                ("2", "High"),
                ("3", "Moderate"),
                ("4", "Low"),
            ],
        ),
        (
            tables::CHANGE_REQUEST,
            "category",
            vec![
                ("software", "Software"),
                ("hardware", "Hardware"),
                ("network", "Network"),
                ("service", "Service"),
                ("other", "Other"),
            ],
        ),
        (
            tables::CHANGE_REQUEST,
            "scope",
            vec![
                ("1", "Enterprise"),
                ("2", "Large"),
                ("3", "Medium"),
                ("4", "Small"),
                ("5", "Very Small"),
            ],
        ),
        (
            tables::CHANGE_REQUEST,
            "close_code",
            vec![
                ("successful", "Successful"),
                ("successful_issues", "Successful with issues"),
                ("unsuccessful", "Unsuccessful"),
            ],
        ),
        (
            tables::CHANGE_REQUEST,
            "approval",
            vec![
                ("not requested", "Not Yet Requested"),
                ("requested", "Requested"),
                ("approved", "Approved"),
                ("rejected", "Rejected"),
            ],
        ),
        (
            tables::TASK,
            "escalation",
            vec![
                ("0", "Normal"),
                ("1", "Moderate"),
                ("2", "High"),
                ("3", "Overdue"),
            ],
        ),
    ];
    for table in [tables::INCIDENT, tables::CHANGE_REQUEST] {
        lists.push((table, "priority", priority.clone()));
        lists.push((table, "urgency", level.clone()));
        lists.push((table, "impact", level.clone()));
    }
    lists
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small(seed: u64) -> GeneratorConfig {
        GeneratorConfig {
            seed,
            incidents: 300,
            change_requests: 60,
            users: 20,
            ..GeneratorConfig::default()
        }
    }

    fn accounts() -> Vec<Account> {
        vec![Account {
            user_name: "integration".into(),
            name: "Integration".into(),
            roles: vec!["itil".into()],
            time_zone: "UTC".into(),
        }]
    }

    #[test]
    fn same_seed_gives_identical_data_and_other_seeds_differ() {
        let a = generate(&small(1), &accounts());
        assert_eq!(a, generate(&small(1), &accounts()));
        assert_ne!(a, generate(&small(2), &accounts()));
    }

    #[test]
    fn incident_timestamps_follow_the_state() {
        let data = generate(&small(3), &accounts());
        let time = |r: &Record, f: &str| parse_time(field(r, f)).ok();
        let incidents = &data.tables["incident"];
        assert_eq!(incidents.len(), 300);
        for r in incidents {
            let opened = time(r, "opened_at").unwrap();
            let updated = time(r, "sys_updated_on").unwrap();
            assert!(opened <= updated, "{r:?}");
            assert!(updated <= small(3).data_end);
            match field(r, "state") {
                "6" | "7" => {
                    let resolved = time(r, "resolved_at").unwrap();
                    assert!(opened <= resolved && resolved <= updated, "{r:?}");
                    assert!(!field(r, "resolved_by").is_empty());
                    assert!(!field(r, "close_code").is_empty());
                    if field(r, "state") == "7" {
                        let closed = time(r, "closed_at").unwrap();
                        assert!(resolved <= closed && closed <= updated, "{r:?}");
                    }
                }
                _ => assert!(field(r, "resolved_at").is_empty()),
            }
        }
        let priorities: std::collections::BTreeSet<&str> =
            incidents.iter().map(|r| field(r, "priority")).collect();
        assert_eq!(
            priorities.len(),
            5,
            "all five priorities appear: {priorities:?}"
        );
    }

    #[test]
    fn same_second_option_puts_n_incidents_in_one_second() {
        let config = GeneratorConfig {
            same_second: 50,
            ..small(4)
        };
        let data = generate(&config, &accounts());
        let end = format_time(config.data_end);
        let n = data.tables["incident"]
            .iter()
            .filter(|r| field(r, "sys_updated_on") == end)
            .count();
        assert_eq!(n, 50);
    }

    #[test]
    fn accounts_get_users_and_roles() {
        let data = generate(&small(5), &accounts());
        let user = data.tables["sys_user"]
            .iter()
            .find(|u| field(u, "user_name") == "integration")
            .unwrap();
        let itil = data.tables["sys_user_role"]
            .iter()
            .find(|r| field(r, "name") == "itil")
            .unwrap();
        assert!(
            data.tables["sys_user_has_role"]
                .iter()
                .any(|g| field(g, "user") == field(user, "sys_id")
                    && field(g, "role") == field(itil, "sys_id"))
        );
        assert!(
            data.tables["sys_dictionary"]
                .iter()
                .any(|d| field(d, "element") == "u_risk_score")
        );
    }

    #[test]
    fn ordinary_users_carry_employee_numbers_and_some_have_none() {
        let data = generate(&small(6), &accounts());
        let users = &data.tables["sys_user"];
        let numbers: Vec<&str> = users
            .iter()
            .filter(|u| field(u, "user_name") != "integration")
            .map(|u| field(u, "employee_number"))
            .collect();
        let set: Vec<&&str> = numbers.iter().filter(|n| !n.is_empty()).collect();
        assert!(set.len() > numbers.len() / 2, "{numbers:?}");
        assert!(
            set.len() < numbers.len(),
            "some users have none: {numbers:?}"
        );
        let distinct: std::collections::BTreeSet<&&&str> = set.iter().collect();
        assert_eq!(distinct.len(), set.len(), "employee numbers are unique");
        let account = users
            .iter()
            .find(|u| field(u, "user_name") == "integration")
            .unwrap();
        assert_eq!(field(account, "employee_number"), "");
    }

    #[test]
    fn a_share_of_incidents_is_caused_by_a_change_implemented_shortly_before() {
        let data = generate(&small(7), &accounts());
        let changes = &data.tables["change_request"];
        let incidents = &data.tables["incident"];
        let linked: Vec<&Record> = incidents
            .iter()
            .filter(|i| !field(i, "caused_by").is_empty())
            .collect();
        // A realistic share: some, far from all (300 incidents, 60 changes).
        assert!(
            (10..=90).contains(&linked.len()),
            "{} of {} incidents linked",
            linked.len(),
            incidents.len()
        );
        for incident in linked {
            let cause = changes
                .iter()
                .find(|c| field(c, "sys_id") == field(incident, "caused_by"))
                .unwrap_or_else(|| panic!("caused_by points at no change: {incident:?}"));
            assert!(IMPLEMENTED_CHANGE_STATES.contains(&field(cause, "state")));
            let opened = parse_time(field(incident, "opened_at")).unwrap();
            let started = parse_time(field(cause, "start_date")).unwrap();
            assert!(started < opened, "{cause:?} started after {incident:?}");
            assert!(opened - started <= Duration::days(FAILURE_WINDOW_DAYS));
        }
        assert!(
            data.tables["sys_dictionary"]
                .iter()
                .any(|d| field(d, "element") == "caused_by"
                    && field(d, "reference") == "change_request"),
            "the dictionary lists caused_by as a change_request reference"
        );
    }
}
