//! The user-defined functions and procedures of a database that run DDL, so that a statement
//! calling one (`SELECT f()`, `CALL p()`, a `PERFORM` in a `DO` block) is held to the rules of
//! the DDL it runs — wherever and by whomever the routine was created.
//!
//! The proxy reads them from `pg_proc` per database (`proxy::routines`) and hands each session a
//! shared, read-only [`Routines`]. Only routines whose body runs DDL, `EXECUTE`s SQL built at
//! run time, or cannot be read are kept: in most databases the set is empty, and then nothing
//! on the plain-DML fast path changes. Otherwise the fast path looks for the routines' names in
//! the query text (a substring test) and parses only a query that mentions one.

use std::collections::HashMap;

use super::classify::{ClassifyOptions, classify, string_value};
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
    /// The routines among `definitions` — `(schema, name, procedure, CREATE statement)` as
    /// `pg_get_functiondef` prints it — whose bodies run DDL (or may).
    pub fn from_definitions(
        definitions: impl IntoIterator<Item = (String, String, bool, String)>,
        server_major: u32,
    ) -> Self {
        let mut routines = Self::default();
        for (schema, name, procedure, definition) in definitions {
            let Some((statements, dynamic)) = routine_statements(&definition, server_major) else {
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
            let lower = name.to_lowercase();
            if !routines.lowercase_names.contains(&lower) {
                routines.lowercase_names.push(lower);
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
                });
        }
        routines
    }

    /// Whether no routine runs DDL.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// Whether `text` may call one of them: it mentions one's name (any case). Cheap: no parse.
    pub fn mentioned_in(&self, text: &str) -> bool {
        if self.lowercase_names.is_empty() {
            return false;
        }
        let lower = text.to_lowercase();
        self.lowercase_names
            .iter()
            .any(|n| lower.contains(n.as_str()))
    }

    /// The routines the statement calls (by name; a schema-qualified call only that schema's).
    pub fn called_by(&self, node: &NodeEnum) -> Vec<&Routine> {
        let mut out: Vec<&Routine> = Vec::new();
        if self.is_empty() {
            return out;
        }
        for (child, ..) in node.nodes() {
            let NodeRef::FuncCall(call) = child else {
                continue;
            };
            let parts: Vec<&str> = call.funcname.iter().filter_map(string_value).collect();
            let (schema, name) = match parts.as_slice() {
                [name] => (None, *name),
                [.., schema, name] => (Some(*schema), *name),
                [] => continue,
            };
            for routine in self.by_name.get(name).into_iter().flatten() {
                if schema.is_none_or(|s| s == routine.schema)
                    && !out.iter().any(|r| std::ptr::eq(*r, routine))
                {
                    out.push(routine);
                }
            }
        }
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::analysis::parse::{Options, parse_script};

    fn routines() -> Routines {
        Routines::from_definitions(
            [
                (
                    "public".to_owned(),
                    "rename_it".to_owned(),
                    false,
                    "CREATE OR REPLACE FUNCTION public.rename_it()\n RETURNS void\n LANGUAGE sql\nAS $function$ ALTER TABLE victim RENAME COLUMN a TO a2 $function$\n".to_owned(),
                ),
                (
                    "app".to_owned(),
                    "Move".to_owned(),
                    true,
                    "CREATE OR REPLACE PROCEDURE app.\"Move\"(t text)\n LANGUAGE plpgsql\nAS $procedure$ BEGIN EXECUTE format('ALTER TABLE %I SET SCHEMA archive', t); END $procedure$\n".to_owned(),
                ),
                (
                    "public".to_owned(),
                    "harmless".to_owned(),
                    false,
                    "CREATE OR REPLACE FUNCTION public.harmless()\n RETURNS int\n LANGUAGE sql\nAS $function$ SELECT 1 $function$\n".to_owned(),
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
}
