//! The frame around every console page: header, navigation, who is logged in.

use maud::{DOCTYPE, Markup, html};

use crate::{config::TokenScope, http::api::ApiCaller};

/// Which navigation entry is the current page.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Live,
    Kpis,
    Refused,
    Operations,
    /// A page of no entry (one call, the login, an error).
    None,
}

const ENTRIES: &[(Nav, &str, &str)] = &[
    (Nav::Live, "/console", "Live calls"),
    (Nav::Kpis, "/console/kpis", "KPIs"),
    (Nav::Refused, "/console/refused", "Refused callbacks"),
    (Nav::Operations, "/console/operations", "Operations"),
];

pub fn page(title: &str, viewer: Option<&ApiCaller>, current: Nav, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · callhook" }
                link rel="icon" href="data:,";
                link rel="stylesheet" href="/console/assets/console.css";
                script src="/console/assets/console.js" defer {}
            }
            body {
                header.top {
                    a.brand href="/console" { "callhook" }
                    @if let Some(viewer) = viewer {
                        nav {
                            @for (nav, href, label) in ENTRIES {
                                a href=(href) class=[(current == *nav).then_some("current")] { (label) }
                            }
                        }
                        div.who {
                            span.name { (viewer.name) }
                            @match viewer.scope {
                                TokenScope::Full => span.scope.full title="sees numbers as stored; may reprocess" { "full" },
                                TokenScope::Masked => span.scope.masked title="sees phone numbers masked" { "masked" },
                            }
                            form method="post" action="/console/logout" {
                                button type="submit" { "Log out" }
                            }
                        }
                    }
                }
                main {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}
