//! The user-defined functions and procedures of a database that run DDL, so that a statement
//! calling one (`SELECT f()`, `CALL p()`, a `PERFORM` in a `DO` block) is held to the rules of
//! the DDL it runs — wherever and by whomever the routine was created.
//!
//! The proxy reads them from `pg_proc` per database (`proxy::routines`) and hands each session a
//! shared, read-only [`Routines`]. Only routines whose body runs DDL, `EXECUTE`s SQL built at
//! run time, or cannot be read are kept: in most databases the set is empty, and then nothing
//! on the plain-DML fast path changes. Otherwise the fast path looks for the routines' names in
//! the query text (a substring test) and parses only a query that mentions one.
//!
//! **Triggers** are routines too: a trigger function that runs DDL runs it inside the
//! `INSERT`, `UPDATE`, `DELETE`, `MERGE`, `TRUNCATE` or `COPY … FROM` that fires it, so that
//! statement is held to the rules of the DDL, with the trigger named. The tables such triggers
//! are on join the routines' names in the fast path's substring test. An unqualified table name
//! matches a trigger table of that name in any schema (the statement's `search_path` is not
//! known here): at worst a statement is judged that did not need to be.

use std::collections::HashMap;

use super::classify::{ClassifyOptions, RelationName, classify, string_value};
use super::parse::{NodeEnum, NodeRef};
use super::rules::dynamic_ddl::routine_statements;

/// One routine that runs DDL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routine {
    /// Its schema.
    pub schema: String,
    /// Its name (as stored: case preserved).
    pub name: String,
    /// A procedure (`CALL`) rather than a function.
    pub procedure: bool,
    /// The SQL its body runs: statements written out, and `EXECUTE`s of SQL known before it
    /// runs.
    pub statements: Vec<String>,
    /// It also `EXECUTE`s SQL built at run time, or its body cannot be read.
    pub dynamic: bool,
    /// The enabled triggers that call it.
    pub triggers: Vec<Trigger>,
}

/// An enabled trigger whose function runs DDL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trigger {
    /// The table's (or view's) schema.
    pub schema: String,
    /// The table (or view) it is on.
    pub table: String,
    /// The events that fire it, as `pg_trigger.tgtype`'s bits ([`Trigger::INSERT`], …).
    pub events: u8,
}

impl Trigger {
    /// Fired by `INSERT` (and `COPY … FROM`).
    pub const INSERT: u8 = 4;
    /// Fired by `DELETE`.
    pub const DELETE: u8 = 8;
    /// Fired by `UPDATE`.
    pub const UPDATE: u8 = 16;
    /// Fired by `TRUNCATE`.
    pub const TRUNCATE: u8 = 32;

    fn on(&self, table: &RelationName) -> bool {
        self.table == table.name && table.schema.as_ref().is_none_or(|s| *s == self.schema)
    }
}

/// A routine's definition as read from the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Definition {
    /// Its schema.
    pub schema: String,
    /// Its name.
    pub name: String,
    /// A procedure rather than a function.
    pub procedure: bool,
    /// Its `CREATE` statement, as `pg_get_functiondef` prints it.
    pub create_statement: String,
    /// The enabled triggers that call it.
    pub triggers: Vec<Trigger>,
}

/// How a statement runs a routine.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    /// The routine.
    pub routine: &'a Routine,
    /// The trigger that runs it, when the statement fires one rather than calling it.
    pub trigger: Option<&'a Trigger>,
}

impl Call<'_> {
    /// Where its DDL runs, for messages: `in function s.f, called here`.
    pub fn describe(&self) -> String {
        match self.trigger {
            None => format!("in {}, called here", self.routine.describe()),
            Some(t) => format!(
                "in trigger function {}.{} on {}.{}, fired here",
                self.routine.schema, self.routine.name, t.schema, t.table
            ),
        }
    }
}

impl Routine {
    /// `function s.f` or `procedure s.p`, for messages.
    pub fn describe(&self) -> String {
        let kind = if self.procedure {
            "procedure"
        } else {
            "function"
        };
        format!("{kind} {}.{}", self.schema, self.name)
    }
}

/// The routines of one database that run DDL, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Routines {
    by_name: HashMap<String, Vec<Routine>>,
    /// Their names lower-cased, for the fast path's substring test.
    lowercase_names: Vec<String>,
}

impl Routines {
    /// The routines among `definitions` whose bodies run DDL (or may).
    pub fn from_definitions(
        definitions: impl IntoIterator<Item = Definition>,
        server_major: u32,
    ) -> Self {
        let mut routines = Self::default();
        for Definition {
            schema,
            name,
            procedure,
            create_statement,
            triggers,
        } in definitions
        {
            let Some((statements, dynamic)) = routine_statements(&create_statement, server_major)
            else {
                continue;
            };
            let runs_ddl = statements.iter().any(|sql| {
                super::parse::parse_script(sql, super::parse::Options::default())
                    .iter()
                    .any(|s| {
                        s.tree.as_ref().map_or(true, |node| {
                            classify(node, ClassifyOptions { server_major }).governed()
                        })
                    })
            });
            if !runs_ddl && !dynamic {
                continue;
            }
            let mentions = std::iter::once(&name).chain(triggers.iter().map(|t| &t.table));
            for mention in mentions {
                let lower = mention.to_lowercase();
                if !routines.lowercase_names.contains(&lower) {
                    routines.lowercase_names.push(lower);
                }
            }
            routines
                .by_name
                .entry(name.clone())
                .or_default()
                .push(Routine {
                    schema,
                    name,
                    procedure,
                    statements,
                    dynamic,
                    triggers,
                });
        }
        routines
    }

    /// Whether no routine runs DDL.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// Whether `text` may run one of them: it mentions one's name or the table of one's
    /// trigger (any case). Cheap: no parse.
    pub fn mentioned_in(&self, text: &str) -> bool {
        if self.lowercase_names.is_empty() {
            return false;
        }
        let lower = text.to_lowercase();
        self.lowercase_names
            .iter()
            .any(|n| lower.contains(n.as_str()))
    }

    /// The routines the statement calls (by name; a schema-qualified call only that schema's)
    /// or fires as triggers.
    pub fn called_by(&self, node: &NodeEnum) -> Vec<&Routine> {
        self.calls(node).into_iter().map(|c| c.routine).collect()
    }

    /// How the statement runs each of the routines: called, or fired as a trigger.
    pub fn calls<'a>(&'a self, node: &NodeEnum) -> Vec<Call<'a>> {
        let mut out: Vec<Call<'a>> = Vec::new();
        if self.is_empty() {
            return out;
        }
        let mut add = |call: Call<'a>| {
            if !out.iter().any(|c| std::ptr::eq(c.routine, call.routine)) {
                out.push(call);
            }
        };
        for (child, ..) in node.nodes() {
            let (table, events) = match child {
                NodeRef::FuncCall(call) => {
                    let parts: Vec<&str> = call.funcname.iter().filter_map(string_value).collect();
                    let (schema, name) = match parts.as_slice() {
                        [name] => (None, *name),
                        [.., schema, name] => (Some(*schema), *name),
                        [] => continue,
                    };
                    for routine in self.by_name.get(name).into_iter().flatten() {
                        if schema.is_none_or(|s| s == routine.schema) {
                            add(Call {
                                routine,
                                trigger: None,
                            });
                        }
                    }
                    continue;
                }
                NodeRef::InsertStmt(s) => (s.relation.as_ref(), Trigger::INSERT),
                NodeRef::UpdateStmt(s) => (s.relation.as_ref(), Trigger::UPDATE),
                NodeRef::DeleteStmt(s) => (s.relation.as_ref(), Trigger::DELETE),
                NodeRef::MergeStmt(s) => (
                    s.relation.as_ref(),
                    Trigger::INSERT | Trigger::UPDATE | Trigger::DELETE,
                ),
                NodeRef::CopyStmt(s) if s.is_from => (s.relation.as_ref(), Trigger::INSERT),
                NodeRef::TruncateStmt(s) => {
                    for rv in s.relations.iter().filter_map(|n| match &n.node {
                        Some(NodeEnum::RangeVar(rv)) => Some(rv),
                        _ => None,
                    }) {
                        self.fired(
                            &RelationName::from_range_var(rv),
                            Trigger::TRUNCATE,
                            &mut add,
                        );
                    }
                    continue;
                }
                _ => continue,
            };
            if let Some(rv) = table {
                self.fired(&RelationName::from_range_var(rv), events, &mut add);
            }
        }
        out
    }

    /// Adds the routines of the triggers on `table` that `events` fire.
    fn fired<'a>(&'a self, table: &RelationName, events: u8, add: &mut impl FnMut(Call<'a>)) {
        for routine in self.by_name.values().flatten() {
            for trigger in &routine.triggers {
                if trigger.events & events != 0 && trigger.on(table) {
                    add(Call {
                        routine,
                        trigger: Some(trigger),
                    });
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::analysis::parse::{Options, parse_script};

    fn def(
        schema: &str,
        name: &str,
        procedure: bool,
        body: &str,
        triggers: Vec<Trigger>,
    ) -> Definition {
        Definition {
            schema: schema.to_owned(),
            name: name.to_owned(),
            procedure,
            create_statement: body.to_owned(),
            triggers,
        }
    }

    fn routines() -> Routines {
        Routines::from_definitions(
            [
                def(
                    "public",
                    "rename_it",
                    false,
                    "CREATE OR REPLACE FUNCTION public.rename_it()\n RETURNS void\n LANGUAGE sql\nAS $function$ ALTER TABLE victim RENAME COLUMN a TO a2 $function$\n",
                    Vec::new(),
                ),
                def(
                    "app",
                    "Move",
                    true,
                    "CREATE OR REPLACE PROCEDURE app.\"Move\"(t text)\n LANGUAGE plpgsql\nAS $procedure$ BEGIN EXECUTE format('ALTER TABLE %I SET SCHEMA archive', t); END $procedure$\n",
                    Vec::new(),
                ),
                def(
                    "public",
                    "harmless",
                    false,
                    "CREATE OR REPLACE FUNCTION public.harmless()\n RETURNS int\n LANGUAGE sql\nAS $function$ SELECT 1 $function$\n",
                    Vec::new(),
                ),
                def(
                    "public",
                    "add_partition",
                    false,
                    "CREATE OR REPLACE FUNCTION public.add_partition()\n RETURNS trigger\n LANGUAGE plpgsql\nAS $function$ BEGIN ALTER TABLE events ADD COLUMN seen int; RETURN NEW; END $function$\n",
                    vec![Trigger {
                        schema: "public".to_owned(),
                        table: "Events_In".to_owned(),
                        events: Trigger::INSERT | Trigger::UPDATE,
                    }],
                ),
            ],
            17,
        )
    }

    fn node(sql: &str) -> NodeEnum {
        parse_script(sql, Options::default())
            .remove(0)
            .tree
            .unwrap()
    }

    #[test]
    fn only_routines_that_run_ddl_are_kept() {
        let r = routines();
        assert!(r.mentioned_in("select RENAME_IT()"));
        assert!(!r.mentioned_in("SELECT harmless()"));
        let called = r.called_by(&node("SELECT x, rename_it() FROM t"));
        assert_eq!(called.len(), 1);
        assert_eq!(
            called[0].statements,
            ["ALTER TABLE victim RENAME COLUMN a TO a2"]
        );
        assert!(!called[0].dynamic);
        assert!(r.called_by(&node("SELECT other.rename_it()")).is_empty());
        let called = r.called_by(&node("CALL app.\"Move\"('t')"));
        assert_eq!(called.len(), 1);
        assert!(called[0].dynamic, "its EXECUTE depends on a parameter");
        assert!(called[0].procedure);
        assert!(r.called_by(&node("SELECT harmless()")).is_empty());
    }

    /// DML that fires a trigger whose function runs DDL runs that DDL: the events and the
    /// table decide, a SELECT or another event does not fire it.
    #[test]
    fn dml_that_fires_a_ddl_trigger_runs_its_function() {
        let r = routines();
        assert!(r.mentioned_in("insert into \"Events_In\" values (1)"));
        for fires in [
            "INSERT INTO \"Events_In\" VALUES (1)",
            "UPDATE public.\"Events_In\" SET a = 1",
            "WITH x AS (INSERT INTO \"Events_In\" VALUES (1) RETURNING 1) SELECT * FROM x",
            "MERGE INTO \"Events_In\" t USING s ON t.a = s.a WHEN MATCHED THEN DELETE",
            "COPY \"Events_In\" FROM STDIN",
        ] {
            let calls = r.calls(&node(fires));
            assert_eq!(calls.len(), 1, "{fires}");
            assert_eq!(
                calls[0].describe(),
                "in trigger function public.add_partition on public.Events_In, fired here"
            );
        }
        for quiet in [
            "SELECT * FROM \"Events_In\"",
            "DELETE FROM \"Events_In\"",
            "TRUNCATE \"Events_In\"",
            "COPY \"Events_In\" TO STDOUT",
            "INSERT INTO other.\"Events_In\" VALUES (1)",
            "INSERT INTO events_in VALUES (1)",
        ] {
            assert!(r.calls(&node(quiet)).is_empty(), "{quiet}");
        }
    }
}
