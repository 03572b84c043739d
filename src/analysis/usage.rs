//! Whether a statement uses a table or one of its columns: the evidence behind the contract
//! guard (dropping or renaming what running queries still read).
//!
//! The statements come from `pg_stat_statements` (normalised texts: constants are `$n`
//! parameters, which parse like any parameter) or from function bodies. Each is parsed with
//! PostgreSQL's grammar and walked with the scopes PostgreSQL resolves names in, so that a
//! statement counts as using `orders.note` when, and only when, PostgreSQL would read or write
//! that column for it:
//!
//! - `note`, `o.note` or `orders.note` that resolves to `orders` — an unqualified name
//!   resolves in the innermost query level with a relation that has such a column, then outward
//!   (correlated subqueries);
//! - `*` or `o.*` over `orders` (every column is read), a whole-row reference (`SELECT o FROM
//!   orders o`), `INSERT INTO orders VALUES …` without a column list (values go by position),
//!   `COPY orders` without one, `INSERT`/`UPDATE`/`MERGE` target columns, `ON CONFLICT (note)`,
//!   `JOIN … USING (note)`, `excluded.note`;
//! - a view that reads the column, or a function whose body does ([`Surroundings`], read from
//!   the catalog by the caller): naming the view or calling the function counts.
//!
//! For a table (drop or rename of the table) any reference to it counts, views and functions
//! as above. Only what an application runs counts — queries, DML, `COPY`, cursors, calls,
//! `LOCK`, `TRUNCATE`; schema changes (an earlier migration's `ALTER TABLE`, `CREATE VIEW`,
//! `CREATE INDEX`) are not uses by running code.
//!
//! What cannot be decided from the text errs toward "used": a relation of unknown columns (a
//! subquery, a function in `FROM`, a CTE) does not hide an outer `orders.note`; an unqualified
//! table name matches `orders` in any schema (the statement's `search_path` is not known); a
//! text that does not parse but mentions the names counts as a use ([`Use::Unparsed`]).
//!
//! The walk goes over the parse tree serialised as JSON, so every node type's children are
//! visited without a hand-written list of them; the node types that open scopes or name
//! columns are handled by name.

use serde_json::{Map, Value};

use super::classify::{RelationName, alter_cmds, drop_object_names, subtype};
use super::parse::{NodeEnum, Options, ast, parse_plpgsql, parse_script};
use super::registry::RuleId;

/// What is about to be dropped, renamed or retyped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    /// The table's schema.
    pub(crate) schema: String,
    /// The table.
    pub(crate) table: String,
    /// The column, for a column change; `None` for the whole table.
    pub(crate) column: Option<String>,
}

impl Target {
    fn is(&self, schema: Option<&str>, name: &str) -> bool {
        name == self.table && schema.is_none_or(|s| s == self.schema)
    }
}

/// What the catalog says around a target, read by the caller.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Surroundings {
    /// Other relations with a column of the target column's name, as `(schema, name)`: an
    /// unqualified reference in a query level that has one of them resolves there.
    pub(crate) same_column: Vec<(String, String)>,
    /// Views that read the target, directly or through other views, as `(schema, name)`.
    pub(crate) views: Vec<(String, String)>,
    /// Functions and procedures whose bodies use the target, as `(schema, name)`.
    pub(crate) routines: Vec<(String, String)>,
}

/// How a statement uses the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Use {
    /// It names the column (reads or writes it).
    Column,
    /// It reads or writes every column of the table: `*`, a whole-row reference, an `INSERT`
    /// or `COPY` without a column list.
    EveryColumn,
    /// It names the table (a table target).
    Table,
    /// It reads a view that uses the target.
    View(String),
    /// It calls a function or procedure whose body uses the target.
    Routine(String),
    /// It does not parse, and mentions the names.
    Unparsed,
}

impl Use {
    /// How the use reads in a message: `reads every column (SELECT *)`.
    pub(crate) fn describe(&self) -> String {
        match self {
            Self::Column => "names the column".to_owned(),
            Self::EveryColumn => {
                "uses every column (*, a whole row, or INSERT/COPY without a column list)"
                    .to_owned()
            }
            Self::Table => "names the table".to_owned(),
            Self::View(v) => format!("reads view {v}, which uses it"),
            Self::Routine(r) => format!("calls {r}, whose body uses it"),
            Self::Unparsed => "does not parse here and mentions it".to_owned(),
        }
    }
}

/// What the samples of `pg_stat_statements` say about one target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Evidence {
    /// There is none to go by: why.
    Unavailable(String),
    /// Statements were observed over the last `seconds` (the window, or the shorter span the
    /// samples cover once it is at least the policy's minimum).
    Observed {
        /// How far back the counts go.
        seconds: u64,
        /// Statements of the database that ran in that span.
        tracked: u64,
        /// Those that use the target.
        uses: Vec<UsedBy>,
    },
}

/// A statement that used the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UsedBy {
    /// `pg_stat_statements.queryid`.
    pub(crate) queryid: i64,
    /// Its normalised text.
    pub(crate) text: String,
    /// Its calls in the span.
    pub(crate) calls: i64,
    /// A reset in the span may have lost calls: `calls` is a lower bound.
    pub(crate) lower_bound: bool,
    /// It disappeared from `pg_stat_statements` in the span: it may have run before that.
    pub(crate) possibly: bool,
    /// How it uses the target.
    pub(crate) how: Use,
    /// Seen through ddlgate itself (`evidence_observe`) rather than in `pg_stat_statements`;
    /// `queryid` is then ddlgate's hash of the text.
    pub(crate) observed: bool,
}

impl UsedBy {
    /// `queryid 42, 1,204 calls: SELECT note FROM orders WHERE … (names the column)`.
    pub(crate) fn describe(&self) -> String {
        let calls = if self.possibly && self.calls == 0 {
            "evicted from pg_stat_statements in the window (may have run)".to_owned()
        } else {
            format!(
                "{}{} call{}",
                if self.lower_bound { "at least " } else { "" },
                thousands(self.calls),
                if self.calls == 1 { "" } else { "s" }
            )
        };
        let source = if self.observed {
            "seen through ddlgate".to_owned()
        } else {
            format!("queryid {}", self.queryid)
        };
        format!(
            "{source}, {calls}: {} ({})",
            shorten(&self.text, 120),
            self.how.describe()
        )
    }
}

/// `1284` → `1,284`.
pub(crate) fn thousands(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

/// The text on one line, cut to `max` characters with `…`.
pub(crate) fn shorten(text: &str, max: usize) -> String {
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() <= max {
        return one_line;
    }
    let mut cut: String = one_line.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// A span of seconds as people say it: `24h`, `90min`, `45s`.
pub(crate) fn span(seconds: u64) -> String {
    if seconds >= 3600 && seconds % 3600 == 0 {
        format!("{}h", seconds / 3600)
    } else if seconds >= 60 && seconds % 60 == 0 {
        format!("{}min", seconds / 60)
    } else {
        format!("{seconds}s")
    }
}

impl Evidence {
    /// One sentence: `no use of public.orders.note in 24h by 1,284 tracked statements`, or
    /// `used in the last 24h by 2 of 1,284 tracked statements`, or why there is none.
    pub(crate) fn summary(&self, target: &Target) -> String {
        let name = match &target.column {
            Some(c) => format!("{}.{}.{c}", target.schema, target.table),
            None => format!("{}.{}", target.schema, target.table),
        };
        match self {
            Self::Unavailable(why) => format!("no evidence of use for {name}: {why}"),
            Self::Observed {
                seconds,
                tracked,
                uses,
            } if uses.is_empty() => format!(
                "no use of {name} in {} by {} tracked statement{}",
                span(*seconds),
                thousands(i64::try_from(*tracked).unwrap_or(i64::MAX)),
                if *tracked == 1 { "" } else { "s" }
            ),
            Self::Observed {
                seconds,
                tracked,
                uses,
            } => format!(
                "{name} was used in the last {} by {} of {} tracked statement{}",
                span(*seconds),
                uses.len(),
                thousands(i64::try_from(*tracked).unwrap_or(i64::MAX)),
                if *tracked == 1 { "" } else { "s" }
            ),
        }
    }
}

/// The evidence of use a request is judged with: empty where none is kept (no `evidence_dsn`,
/// no evidence tables in the `--database`), and then the contract rules act as without it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Evidences {
    /// The rules it decides (the policy's `[evidence]`).
    pub(crate) rules: Vec<RuleId>,
    /// What was found, by table and column as the statements name them.
    pub(crate) found: Vec<Found>,
}

/// The evidence about one table or column a statement names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Found {
    /// The table as the statement names it.
    pub(crate) name: RelationName,
    /// The column, for a column change.
    pub(crate) column: Option<String>,
    /// The table as the catalog names it, when it exists.
    pub(crate) target: Option<Target>,
    /// What the samples say.
    pub(crate) evidence: Evidence,
}

impl Found {
    /// One sentence (see [`Evidence::summary`]).
    pub(crate) fn summary(&self) -> String {
        match (&self.target, &self.evidence) {
            (Some(t), e) => e.summary(t),
            (None, Evidence::Unavailable(why)) => {
                let name = match &self.column {
                    Some(c) => format!("{}.{c}", self.name),
                    None => self.name.to_string(),
                };
                format!("no evidence of use for {name}: {why}")
            }
            (None, Evidence::Observed { .. }) => String::new(),
        }
    }
}

impl Evidences {
    /// What was found about `name` (`column`), when evidence decides `rule`.
    pub(crate) fn about(
        &self,
        rule: RuleId,
        name: &RelationName,
        column: Option<&str>,
    ) -> Option<&Found> {
        if !self.rules.contains(&rule) {
            return None;
        }
        self.found
            .iter()
            .find(|f| f.name == *name && f.column.as_deref() == column)
    }

    /// The summaries of what was found about the statement's targets.
    pub(crate) fn summaries(&self, node: &NodeEnum) -> Vec<String> {
        targets(node)
            .iter()
            .filter_map(|(name, column)| {
                self.found
                    .iter()
                    .find(|f| f.name == *name && f.column == *column)
            })
            .map(Found::summary)
            .collect()
    }
}

/// The tables and columns a statement drops, renames or retypes: what the evidence is asked
/// about.
pub(crate) fn targets(node: &NodeEnum) -> Vec<(RelationName, Option<String>)> {
    let relation = |rv: Option<&ast::RangeVar>| rv.map(RelationName::from_range_var);
    match node {
        NodeEnum::AlterTableStmt(s) => {
            let Some(table) = relation(s.relation.as_ref()) else {
                return Vec::new();
            };
            alter_cmds(s)
                .filter(|cmd| {
                    matches!(
                        subtype(cmd),
                        ast::AlterTableType::AtDropColumn | ast::AlterTableType::AtAlterColumnType
                    )
                })
                .map(|cmd| (table.clone(), Some(cmd.name.clone())))
                .collect()
        }
        NodeEnum::RenameStmt(s) => {
            let kind =
                ast::ObjectType::try_from(s.rename_type).unwrap_or(ast::ObjectType::Undefined);
            let Some(table) = relation(s.relation.as_ref()) else {
                return Vec::new();
            };
            match kind {
                ast::ObjectType::ObjectColumn => vec![(table, Some(s.subname.clone()))],
                ast::ObjectType::ObjectTable
                | ast::ObjectType::ObjectView
                | ast::ObjectType::ObjectMatview => vec![(table, None)],
                _ => Vec::new(),
            }
        }
        NodeEnum::DropStmt(s) if s.remove_type == ast::ObjectType::ObjectTable as i32 => {
            drop_object_names(s)
                .into_iter()
                .map(|n| (n, None))
                .collect()
        }
        _ => Vec::new(),
    }
}

/// Whether the text can use the target at all: it mentions the table, one of the views or one
/// of the routines (case-insensitively). Only texts that pass are parsed.
pub(crate) fn may_use(text: &str, target: &Target, around: &Surroundings) -> bool {
    let lower = text.to_lowercase();
    let has = |name: &str| lower.contains(&name.to_lowercase());
    has(&target.table)
        || around.views.iter().any(|(_, v)| has(v))
        || around.routines.iter().any(|(_, r)| has(r))
}

/// How the statements of `text` use the target (the first use found), if they do.
pub(crate) fn find_use(text: &str, target: &Target, around: &Surroundings) -> Option<Use> {
    if !may_use(text, target, around) {
        return None;
    }
    for statement in parse_script(text, Options::default()) {
        let json = statement
            .tree
            .ok()
            .and_then(|tree| serde_json::to_value(&tree).ok());
        let Some(json) = json else {
            if mentions_names(text, target) {
                return Some(Use::Unparsed);
            }
            continue;
        };
        if !is_application_statement(&json) {
            continue;
        }
        let mut walker = Walker {
            target,
            around,
            scopes: Vec::new(),
            found: None,
            depth: 0,
        };
        walker.visit(&json);
        if walker.found.is_some() {
            return walker.found;
        }
    }
    None
}

/// Whether a routine's body uses the target. `definition` is `pg_get_functiondef`'s text,
/// `source` the body (`prosrc`). SQL bodies are parsed statement by statement; PL/pgSQL bodies
/// are parsed with PostgreSQL's PL/pgSQL parser and every SQL fragment of them — statements,
/// and the expressions of `RETURN`, assignments, conditions — is resolved. A body that does
/// not parse counts when it mentions the names. Calls from one routine to another are not
/// followed.
pub(crate) fn body_uses(
    language: &str,
    definition: &str,
    source: &str,
    target: &Target,
    around: &Surroundings,
) -> bool {
    let plain = Surroundings {
        routines: Vec::new(),
        ..around.clone()
    };
    let fragment_uses = |fragment: &str| {
        let parses = parse_script(fragment, Options::default())
            .iter()
            .all(|p| p.tree.is_ok());
        if parses {
            find_use(fragment, target, &plain).is_some()
        } else {
            // An expression: PL/pgSQL evaluates it as `SELECT <expression>`.
            find_use(&format!("SELECT {fragment}"), target, &plain).is_some()
        }
    };
    match language {
        "sql" => find_use(source, target, &plain).is_some(),
        "plpgsql" => match parse_plpgsql(definition) {
            Ok(tree) => {
                let mut fragments = Vec::new();
                plpgsql_fragments(&tree, &mut fragments);
                fragments.iter().any(|f| fragment_uses(f))
            }
            Err(_) => mentions_names(source, target),
        },
        _ => mentions_names(source, target),
    }
}

/// Every SQL fragment (`PLpgSQL_expr.query`) of a PL/pgSQL parse tree.
fn plpgsql_fragments(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            if let Some(q) = map
                .get("PLpgSQL_expr")
                .and_then(|e| e.get("query"))
                .and_then(Value::as_str)
            {
                out.push(q.to_owned());
            }
            map.values().for_each(|v| plpgsql_fragments(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| plpgsql_fragments(v, out)),
        _ => {}
    }
}

/// Whether a statement is one an application runs (queries, DML, `COPY`, cursors, calls),
/// not a schema change: the migrations' own DDL (`CREATE VIEW`, `CREATE INDEX`, an earlier
/// `ALTER TABLE`) is not a use by running code.
fn is_application_statement(json: &Value) -> bool {
    json.as_object().and_then(node).is_some_and(|(kind, _)| {
        matches!(
            kind,
            "SelectStmt"
                | "InsertStmt"
                | "UpdateStmt"
                | "DeleteStmt"
                | "MergeStmt"
                | "CopyStmt"
                | "ExplainStmt"
                | "CreateTableAsStmt"
                | "DeclareCursorStmt"
                | "PrepareStmt"
                | "CallStmt"
                | "LockStmt"
                | "TruncateStmt"
        )
    })
}

/// Whether `text` mentions the table and (for a column target) the column, as words.
pub(crate) fn mentions_names(text: &str, target: &Target) -> bool {
    let lower = text.to_lowercase();
    let word = |name: &str| {
        let name = name.to_lowercase();
        lower.match_indices(&name).any(|(at, _)| {
            let before = lower[..at].chars().next_back();
            let after = lower[at + name.len()..].chars().next();
            let part = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
            !part(before) && !part(after)
        })
    };
    word(&target.table) && target.column.as_deref().is_none_or(word)
}

/// Deeper trees than this are not walked further; what lies below counts as a use.
const MAX_DEPTH: usize = 2_000;

/// One query level's relations (its `FROM`, or a DML statement's target and `USING`/`FROM`).
#[derive(Debug, Default)]
struct Scope {
    relations: Vec<Relation>,
    /// The CTE names this level defines: a plain name among them is not a table.
    ctes: Vec<String>,
}

#[derive(Debug)]
struct Relation {
    /// The name the query refers to it by: its alias, else its name.
    name: String,
    /// It is the target table.
    target: bool,
    /// Whether it has a column of the target column's name.
    has_column: Knows,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Knows {
    Yes,
    No,
    Maybe,
}

struct Walker<'a> {
    target: &'a Target,
    around: &'a Surroundings,
    scopes: Vec<Scope>,
    found: Option<Use>,
    depth: usize,
}

impl Walker<'_> {
    fn found(&mut self, u: Use) {
        if self.found.is_none() {
            self.found = Some(u);
        }
    }

    /// Visits any value: a node (`{"Type": {...}}`), a message or a list.
    fn visit(&mut self, v: &Value) {
        if self.found.is_some() {
            return;
        }
        if self.depth > MAX_DEPTH {
            self.found(Use::Unparsed);
            return;
        }
        self.depth += 1;
        match v {
            Value::Array(items) => items.iter().for_each(|i| self.visit(i)),
            Value::Object(map) => {
                if let Some((kind, body)) = node(map) {
                    self.node(kind, body);
                } else if is_range_var(map) {
                    self.range_var(map);
                } else {
                    map.values().for_each(|v| self.visit(v));
                }
            }
            _ => {}
        }
        self.depth -= 1;
    }

    fn node(&mut self, kind: &str, body: &Map<String, Value>) {
        match kind {
            "SelectStmt" => self.select(body),
            "InsertStmt" => self.insert(body),
            "UpdateStmt" => self.update(body),
            "DeleteStmt" => self.delete(body),
            "MergeStmt" => self.merge(body),
            "CopyStmt" => self.copy(body),
            "ColumnRef" => self.column_ref(body),
            "FuncCall" => {
                if let Some(name) = qualified(body.get("funcname")) {
                    if let Some(r) = self
                        .around
                        .routines
                        .iter()
                        .find(|(s, n)| *n == name.1 && name.0.as_ref().is_none_or(|q| q == s))
                    {
                        self.found(Use::Routine(format!("{}.{}", r.0, r.1)));
                    }
                }
                body.values().for_each(|v| self.visit(v));
            }
            "RangeVar" => self.range_var(body),
            // `ON CONFLICT (note)`.
            "IndexElem" => {
                if body.get("name").and_then(Value::as_str) == self.target.column.as_deref()
                    && self
                        .scopes
                        .last()
                        .is_some_and(|s| s.relations.iter().any(|r| r.target))
                {
                    self.found(Use::Column);
                }
                body.values().for_each(|v| self.visit(v));
            }
            _ => body.values().for_each(|v| self.visit(v)),
        }
    }

    /// A relation named outside a `FROM` list (`LOCK`, `TRUNCATE`, `ALTER TABLE`, …), or
    /// inside one (then [`Self::scope_item`] has also put it in scope).
    fn range_var(&mut self, rv: &Map<String, Value>) {
        let (schema, name) = range_var_name(rv);
        if self.is_cte(schema.as_deref(), &name) {
            return;
        }
        if self.target.column.is_none() && self.target.is(schema.as_deref(), &name) {
            self.found(Use::Table);
        }
        if let Some(v) = self
            .around
            .views
            .iter()
            .find(|(s, n)| *n == name && schema.as_ref().is_none_or(|q| q == s))
        {
            self.found(Use::View(format!("{}.{}", v.0, v.1)));
        }
    }

    fn is_cte(&self, schema: Option<&str>, name: &str) -> bool {
        schema.is_none() && self.scopes.iter().any(|s| s.ctes.iter().any(|c| c == name))
    }

    fn with_clause(&mut self, body: &Map<String, Value>, scope: &mut Scope) {
        let Some(with) = body.get("with_clause").and_then(Value::as_object) else {
            return;
        };
        let recursive = with.get("recursive").and_then(Value::as_bool) == Some(true);
        for cte in list(with.get("ctes")) {
            let Some(("CommonTableExpr", cte)) = cte.as_object().and_then(node) else {
                continue;
            };
            let name = cte
                .get("ctename")
                .and_then(Value::as_str)
                .unwrap_or_default();
            // A CTE sees the CTEs before it, and itself only when recursive: in
            // `WITH orders AS (SELECT * FROM orders)` the inner name is the table.
            if recursive {
                scope.ctes.push(name.to_owned());
            }
            self.scopes.push(std::mem::take(scope));
            if let Some(q) = cte.get("ctequery") {
                self.visit(q);
            }
            *scope = self.scopes.pop().unwrap_or_default();
            if !recursive {
                scope.ctes.push(name.to_owned());
            }
        }
    }

    fn select(&mut self, body: &Map<String, Value>) {
        let mut scope = Scope::default();
        self.with_clause(body, &mut scope);
        for side in ["larg", "rarg"] {
            if let Some(Value::Object(arm)) = body.get(side) {
                self.scopes.push(std::mem::take(&mut scope));
                self.select(arm);
                scope = self.scopes.pop().unwrap_or_default();
            }
        }
        self.scopes.push(scope);
        for item in list(body.get("from_clause")) {
            self.scope_item(item);
        }
        for (key, v) in body {
            if !matches!(
                key.as_str(),
                "with_clause" | "larg" | "rarg" | "from_clause" | "into_clause"
            ) {
                self.visit(v);
            }
        }
        self.scopes.pop();
    }

    /// Puts a `FROM` item's relations in the innermost scope and visits what it contains.
    fn scope_item(&mut self, item: &Value) {
        let Some((kind, body)) = item.as_object().and_then(node) else {
            self.visit(item);
            return;
        };
        match kind {
            "RangeVar" => {
                self.range_var(body);
                self.add_range_var(body);
            }
            "JoinExpr" => {
                let before = self.scopes.last().map_or(0, |s| s.relations.len());
                for side in ["larg", "rarg"] {
                    if let Some(v) = body.get(side) {
                        self.scope_item(v);
                    }
                }
                for name in list(body.get("using_clause")).filter_map(string_node) {
                    self.unqualified(name);
                }
                if let Some(q) = body.get("quals") {
                    self.visit(q);
                }
                // `(a JOIN b …) AS j`: `j.c` is a column of either side.
                let alias = body
                    .get("alias")
                    .and_then(|a| a.get("aliasname"))
                    .and_then(Value::as_str);
                if let Some(alias) = alias {
                    let target = self
                        .scopes
                        .last()
                        .is_some_and(|s| s.relations.iter().skip(before).any(|r| r.target));
                    self.add(Relation {
                        name: alias.to_owned(),
                        target,
                        has_column: Knows::Maybe,
                    });
                }
            }
            "RangeTableSample" => {
                if let Some(v) = body.get("relation") {
                    self.scope_item(v);
                }
                for key in ["args", "repeatable"] {
                    if let Some(v) = body.get(key) {
                        self.visit(v);
                    }
                }
            }
            // A subquery, a function in FROM, XMLTABLE/JSON_TABLE: its own columns.
            _ => {
                self.visit(item);
                let name = body
                    .get("alias")
                    .and_then(|a| a.get("aliasname"))
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                self.add(Relation {
                    name,
                    target: false,
                    has_column: Knows::Maybe,
                });
            }
        }
    }

    fn add(&mut self, relation: Relation) {
        if let Some(scope) = self.scopes.last_mut() {
            scope.relations.push(relation);
        }
    }

    fn add_range_var(&mut self, rv: &Map<String, Value>) {
        let (schema, name) = range_var_name(rv);
        let alias = rv
            .get("alias")
            .and_then(|a| a.get("aliasname"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        let cte = self.is_cte(schema.as_deref(), &name);
        let target = !cte && self.target.is(schema.as_deref(), &name);
        let has_column = if cte {
            Knows::Maybe
        } else if target
            || self
                .around
                .same_column
                .iter()
                .any(|(s, n)| *n == name && schema.as_ref().is_none_or(|q| q == s))
        {
            Knows::Yes
        } else if self
            .around
            .views
            .iter()
            .any(|(s, n)| *n == name && schema.as_ref().is_none_or(|q| q == s))
        {
            // A view over the target may pass the column through under its name.
            Knows::Maybe
        } else {
            Knows::No
        };
        self.add(Relation {
            name: alias.unwrap_or(name),
            target,
            has_column,
        });
    }

    fn column_ref(&mut self, body: &Map<String, Value>) {
        let fields: Vec<Option<&str>> = list(body.get("fields"))
            .map(|f| match f.as_object().and_then(node) {
                Some(("String", s)) => s.get("sval").and_then(Value::as_str),
                _ => None, // A_Star
            })
            .collect();
        match fields.as_slice() {
            [None]
                if self
                    .scopes
                    .last()
                    .is_some_and(|s| s.relations.iter().any(|r| r.target)) =>
            {
                self.found(Use::EveryColumn);
            }
            [Some(name)] => self.unqualified(name),
            [.., Some(relation), last] => {
                let Some(relation) = self.lookup(relation) else {
                    return;
                };
                if !relation.target {
                    return;
                }
                match last {
                    None => self.found(Use::EveryColumn),
                    Some(c) if self.target.column.as_deref() == Some(*c) => {
                        self.found(Use::Column);
                    }
                    Some(_) => {}
                }
            }
            _ => {}
        }
    }

    /// The relation a qualifier names, innermost level first.
    fn lookup(&self, name: &str) -> Option<&Relation> {
        self.scopes
            .iter()
            .rev()
            .find_map(|s| s.relations.iter().find(|r| r.name == name))
    }

    /// An unqualified name: the target column if the first level that can resolve it has the
    /// target; a whole-row reference if it names the target table itself.
    fn unqualified(&mut self, name: &str) {
        if self.target.column.as_deref() == Some(name) {
            for scope in self.scopes.iter().rev() {
                if scope.relations.iter().any(|r| r.target) {
                    self.found(Use::Column);
                    return;
                }
                if scope.relations.iter().any(|r| r.has_column == Knows::Yes) {
                    return;
                }
            }
        } else if self.lookup(name).is_some_and(|r| r.target) {
            // `SELECT o FROM orders o`: the whole row.
            self.found(Use::EveryColumn);
        }
    }

    /// The target of a DML statement, put in a new scope (with `alias`, and `also` relations).
    fn dml_scope(&mut self, body: &Map<String, Value>) -> bool {
        let mut scope = Scope::default();
        self.with_clause(body, &mut scope);
        self.scopes.push(scope);
        let Some(Value::Object(rv)) = body.get("relation") else {
            return false;
        };
        self.range_var(rv);
        self.add_range_var(rv);
        self.scopes
            .last()
            .is_some_and(|s| s.relations.iter().any(|r| r.target))
    }

    /// Column names written by a DML statement (`INSERT (…)`, `UPDATE SET …`).
    fn named_columns(&mut self, targets: Option<&Value>) {
        for t in list(targets) {
            if let Some(("ResTarget", r)) = t.as_object().and_then(node) {
                if r.get("name").and_then(Value::as_str) == self.target.column.as_deref() {
                    self.found(Use::Column);
                }
                if let Some(v) = r.get("val") {
                    self.visit(v);
                }
                if let Some(v) = r.get("indirection") {
                    self.visit(v);
                }
            } else {
                self.visit(t);
            }
        }
    }

    fn insert(&mut self, body: &Map<String, Value>) {
        let target = self.dml_scope(body);
        let cols = list(body.get("cols")).count();
        let source = body.get("select_stmt").filter(|v| !v.is_null());
        if target && self.target.column.is_some() && cols == 0 && source.is_some() {
            self.found(Use::EveryColumn);
        }
        if target {
            self.named_columns(body.get("cols"));
        }
        // The source is its own query level, without the target in scope.
        if let Some(source) = source {
            let own = self.scopes.pop();
            self.visit(source);
            self.scopes.extend(own);
        }
        if let Some(Value::Object(conflict)) = body.get("on_conflict_clause") {
            if target {
                // `excluded` has the target's columns.
                self.add(Relation {
                    name: "excluded".to_owned(),
                    target: true,
                    has_column: Knows::Yes,
                });
                self.named_columns(conflict.get("target_list"));
            }
            for (key, v) in conflict {
                if key != "target_list" {
                    self.visit(v);
                }
            }
        }
        if let Some(v) = body.get("returning_clause") {
            self.visit(v);
        }
        self.scopes.pop();
    }

    fn update(&mut self, body: &Map<String, Value>) {
        let target = self.dml_scope(body);
        for item in list(body.get("from_clause")) {
            self.scope_item(item);
        }
        if target {
            self.named_columns(body.get("target_list"));
        } else if let Some(v) = body.get("target_list") {
            self.visit(v);
        }
        for key in ["where_clause", "returning_clause"] {
            if let Some(v) = body.get(key) {
                self.visit(v);
            }
        }
        self.scopes.pop();
    }

    fn delete(&mut self, body: &Map<String, Value>) {
        self.dml_scope(body);
        for item in list(body.get("using_clause")) {
            self.scope_item(item);
        }
        for key in ["where_clause", "returning_clause"] {
            if let Some(v) = body.get(key) {
                self.visit(v);
            }
        }
        self.scopes.pop();
    }

    fn merge(&mut self, body: &Map<String, Value>) {
        let target = self.dml_scope(body);
        if let Some(source) = body.get("source_relation") {
            self.scope_item(source);
        }
        if let Some(v) = body.get("join_condition") {
            self.visit(v);
        }
        for clause in list(body.get("merge_when_clauses")) {
            let Some(("MergeWhenClause", when)) = clause.as_object().and_then(node) else {
                self.visit(clause);
                continue;
            };
            let values = list(when.get("values")).count();
            let inserts = when.get("command_type").and_then(Value::as_i64)
                == Some(ast::CmdType::CmdInsert as i64);
            if target
                && self.target.column.is_some()
                && inserts
                && values > 0
                && list(when.get("target_list")).count() == 0
            {
                self.found(Use::EveryColumn);
            }
            if target {
                self.named_columns(when.get("target_list"));
            } else if let Some(v) = when.get("target_list") {
                self.visit(v);
            }
            for key in ["condition", "values"] {
                if let Some(v) = when.get(key) {
                    self.visit(v);
                }
            }
        }
        if let Some(v) = body.get("returning_clause") {
            self.visit(v);
        }
        self.scopes.pop();
    }

    fn copy(&mut self, body: &Map<String, Value>) {
        if let Some(q) = body.get("query").filter(|v| !v.is_null()) {
            self.visit(q);
            return;
        }
        let target = self.dml_scope(body);
        let attlist: Vec<&str> = list(body.get("attlist")).filter_map(string_node).collect();
        if target && self.target.column.is_some() {
            if attlist.is_empty() {
                self.found(Use::EveryColumn);
            } else if attlist
                .iter()
                .any(|a| Some(*a) == self.target.column.as_deref())
            {
                self.found(Use::Column);
            }
        }
        if let Some(v) = body.get("where_clause") {
            self.visit(v);
        }
        self.scopes.pop();
    }
}

/// `{"Type": {...}}` → `("Type", {...})`; also unwraps `{"node": {"Type": {...}}}`.
fn node(map: &Map<String, Value>) -> Option<(&str, &Map<String, Value>)> {
    if map.len() != 1 {
        return None;
    }
    let (key, value) = map.iter().next()?;
    if key == "node" {
        return value.as_object().and_then(node);
    }
    if !key.starts_with(|c: char| c.is_ascii_uppercase()) {
        return None;
    }
    Some((key.as_str(), value.as_object()?))
}

/// A `RangeVar` message held in a typed field (not wrapped as a node).
fn is_range_var(map: &Map<String, Value>) -> bool {
    map.contains_key("relname") && map.contains_key("schemaname") && map.contains_key("inh")
}

fn range_var_name(rv: &Map<String, Value>) -> (Option<String>, String) {
    let get = |k: &str| rv.get(k).and_then(Value::as_str).unwrap_or_default();
    let schema = get("schemaname");
    (
        (!schema.is_empty()).then(|| schema.to_owned()),
        get("relname").to_owned(),
    )
}

fn list(v: Option<&Value>) -> impl Iterator<Item = &Value> {
    v.and_then(Value::as_array).into_iter().flatten()
}

fn string_node(v: &Value) -> Option<&str> {
    match v.as_object().and_then(node) {
        Some(("String", s)) => s.get("sval").and_then(Value::as_str),
        _ => None,
    }
}

/// `(schema, name)` of a qualified name given as `String` nodes.
fn qualified(v: Option<&Value>) -> Option<(Option<String>, String)> {
    let parts: Vec<&str> = list(v).filter_map(string_node).collect();
    match parts.as_slice() {
        [name] => Some((None, (*name).to_owned())),
        [.., schema, name] => Some((Some((*schema).to_owned()), (*name).to_owned())),
        [] => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(table: &str, column: &str) -> Target {
        Target {
            schema: "public".to_owned(),
            table: table.to_owned(),
            column: Some(column.to_owned()),
        }
    }

    fn table(table: &str) -> Target {
        Target {
            schema: "public".to_owned(),
            table: table.to_owned(),
            column: None,
        }
    }

    /// `orders.note`, with `customers` also having a `note` column.
    fn note() -> (Target, Surroundings) {
        (
            column("orders", "note"),
            Surroundings {
                same_column: vec![("public".to_owned(), "customers".to_owned())],
                ..Surroundings::default()
            },
        )
    }

    fn uses(sql: &str) -> Option<Use> {
        let (t, s) = note();
        find_use(sql, &t, &s)
    }

    #[test]
    fn naming_the_column_in_any_clause_is_a_use() {
        for sql in [
            "SELECT note FROM orders WHERE id = $1",
            "SELECT id FROM orders WHERE note IS NOT NULL",
            "SELECT o.note FROM orders o",
            "SELECT orders.note FROM public.orders",
            "SELECT id FROM orders ORDER BY note LIMIT $1",
            "SELECT count(*) FROM orders GROUP BY note",
            "SELECT lower(note) FROM orders",
            "UPDATE orders SET note = $1 WHERE id = $2",
            "UPDATE orders SET total = $1 WHERE note = $2",
            "INSERT INTO orders (id, note) VALUES ($1, $2)",
            "DELETE FROM orders WHERE note = $1",
            "DELETE FROM orders WHERE id = $1 RETURNING note",
            "SELECT c.id FROM customers c JOIN orders o USING (note)",
            "INSERT INTO orders (id) VALUES ($1) ON CONFLICT (id) DO UPDATE SET total = excluded.note",
            "COPY orders (id, note) TO STDOUT",
            "WITH recent AS (SELECT note FROM orders) SELECT * FROM recent",
            "SELECT id FROM customers c WHERE EXISTS (SELECT 1 FROM orders o WHERE o.note = c.name)",
            "SELECT (SELECT max(note) FROM orders) AS latest",
            "MERGE INTO orders o USING customers c ON o.id = c.id WHEN MATCHED THEN UPDATE SET note = c.name",
            "SELECT id FROM orders UNION ALL SELECT note FROM orders",
            "UPDATE orders o SET total = $1 FROM customers c WHERE c.name = o.note",
            "SELECT j.note FROM (orders JOIN invoices USING (id)) AS j",
            "SELECT count(*) FILTER (WHERE note IS NULL) FROM orders",
            "SELECT row_number() OVER (ORDER BY note) FROM orders",
            "WITH changed AS (UPDATE orders SET note = $1 RETURNING id) SELECT * FROM changed",
        ] {
            assert_eq!(uses(sql), Some(Use::Column), "{sql}");
        }
    }

    #[test]
    fn star_whole_rows_and_positional_writes_use_every_column() {
        for sql in [
            "SELECT * FROM orders WHERE id = $1",
            "SELECT o.* FROM orders o JOIN customers c ON c.id = o.customer_id",
            "SELECT o FROM orders o",
            "SELECT row_to_json(orders) FROM orders",
            "INSERT INTO orders VALUES ($1, $2, $3)",
            "INSERT INTO orders SELECT * FROM staging",
            "DELETE FROM orders WHERE id = $1 RETURNING *",
            "COPY orders FROM STDIN",
        ] {
            assert_eq!(uses(sql), Some(Use::EveryColumn), "{sql}");
        }
    }

    #[test]
    fn other_tables_columns_and_other_levels_are_not_uses() {
        for sql in [
            "SELECT id, total FROM orders WHERE id = $1",
            "SELECT note FROM customers",
            // `note` resolves to customers, the innermost level that has such a column.
            "SELECT id FROM orders o WHERE EXISTS (SELECT 1 FROM customers c WHERE c.note = $1)",
            "SELECT id FROM orders WHERE customer_id IN (SELECT id FROM customers WHERE note = $1)",
            // The star is the outer level's, which reads customers only.
            "SELECT * FROM customers WHERE id IN (SELECT customer_id FROM orders)",
            "SELECT count(*) FROM orders",
            "INSERT INTO orders (id, total) VALUES ($1, $2)",
            "INSERT INTO orders DEFAULT VALUES",
            "UPDATE orders SET total = total + $1 WHERE id = $2",
            "DELETE FROM orders WHERE id = $1",
            "COPY orders (id, total) TO STDOUT",
            "SELECT note FROM notes",
            "SELECT 1",
            // A CTE named like the table is not the table.
            "WITH orders AS (SELECT 1 AS id) SELECT * FROM orders",
            // The INSERT's source is its own query level: `note` there is customers'.
            "INSERT INTO orders (id) SELECT id FROM customers WHERE note = $1",
            "SELECT c.note FROM orders o JOIN customers c ON c.id = o.customer_id",
        ] {
            assert_eq!(uses(sql), None, "{sql}");
        }
        // A CTE's own query names the table, not the CTE (unless recursive).
        for sql in [
            "WITH orders AS (SELECT * FROM orders) SELECT id FROM orders",
            "INSERT INTO orders (id) VALUES ($1) ON CONFLICT (note) DO NOTHING",
        ] {
            assert!(uses(sql).is_some(), "{sql}");
        }
    }

    #[test]
    fn views_and_routines_that_use_the_target_count() {
        let target = column("orders", "note");
        let around = Surroundings {
            views: vec![("public".to_owned(), "order_notes".to_owned())],
            routines: vec![("app".to_owned(), "note_of".to_owned())],
            ..Surroundings::default()
        };
        assert_eq!(
            find_use("SELECT * FROM order_notes WHERE id = $1", &target, &around),
            Some(Use::View("public.order_notes".to_owned()))
        );
        assert_eq!(
            find_use("SELECT app.note_of($1)", &target, &around),
            Some(Use::Routine("app.note_of".to_owned()))
        );
        assert_eq!(find_use("SELECT other.note_of($1)", &target, &around), None);
        assert_eq!(find_use("SELECT now()", &target, &around), None);
    }

    #[test]
    fn a_table_target_is_used_by_any_reference() {
        let t = table("orders");
        let s = Surroundings::default();
        for sql in [
            "SELECT count(*) FROM orders",
            "SELECT 1 FROM customers c JOIN orders o ON o.customer_id = c.id",
            "DELETE FROM orders WHERE id = $1",
            "TRUNCATE orders",
            "LOCK TABLE orders IN SHARE MODE",
            "INSERT INTO orders DEFAULT VALUES",
            "COPY orders TO STDOUT",
        ] {
            assert_eq!(find_use(sql, &t, &s), Some(Use::Table), "{sql}");
        }
        for sql in [
            "SELECT count(*) FROM customers",
            "SELECT count(*) FROM archive.orders",
            // Schema changes are migrations, not running code.
            "ALTER TABLE orders ADD COLUMN extra text",
            "CREATE VIEW v AS SELECT * FROM orders",
            "WITH orders AS (SELECT 1) SELECT * FROM orders",
        ] {
            assert_eq!(find_use(sql, &t, &s), None, "{sql}");
        }
    }

    #[test]
    fn routine_bodies_are_resolved_statement_and_expression_alike() {
        let (t, s) = note();
        let plpgsql = |body: &str| {
            let definition = format!(
                "CREATE OR REPLACE FUNCTION public.f(p integer) RETURNS text LANGUAGE plpgsql AS $function${body}$function$"
            );
            body_uses("plpgsql", &definition, body, &t, &s)
        };
        assert!(plpgsql(
            "BEGIN RETURN (SELECT note FROM orders WHERE id = p); END"
        ));
        assert!(plpgsql(
            "DECLARE v text; BEGIN SELECT o.note INTO v FROM orders o WHERE o.id = p; RETURN v; END"
        ));
        assert!(plpgsql(
            "BEGIN UPDATE orders SET note = 'x' WHERE id = p; RETURN 'ok'; END"
        ));
        assert!(!plpgsql(
            "BEGIN RETURN (SELECT total::text FROM orders WHERE id = p); END"
        ));
        assert!(!plpgsql(
            "BEGIN RETURN (SELECT note FROM customers WHERE id = p); END"
        ));
        assert!(body_uses(
            "sql",
            "",
            "SELECT note FROM orders WHERE id = $1",
            &t,
            &s
        ));
        assert!(!body_uses("sql", "", "SELECT total FROM orders", &t, &s));
    }

    #[test]
    fn unparsable_text_that_mentions_the_names_counts() {
        assert_eq!(
            uses("SELECT note FROM orders WHERE id = ANY($1) AND"),
            Some(Use::Unparsed)
        );
        assert_eq!(uses("SELECT notes FROM orders WHERE"), None);
    }
}
