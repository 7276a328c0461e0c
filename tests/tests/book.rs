//! The book's structure: every chapter the summary names exists, and every listing it
//! includes names a file and anchor that exist, so a renamed example or anchor fails here and
//! not only when the book is built (`mdbook build book`). The listings themselves are
//! examples that `cargo test` builds and runs, and the book itself is built here, as
//! `mdbook build book` builds it.

use std::path::{Path, PathBuf};

fn book() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../book/src")
}

/// The chapter files the summary links to.
fn chapters() -> Vec<PathBuf> {
    let summary = std::fs::read_to_string(book().join("SUMMARY.md")).expect("book/src/SUMMARY.md");
    summary
        .split("](")
        .skip(1)
        .filter_map(|rest| rest.split(')').next())
        .filter(|link| link.ends_with(".md"))
        .map(|link| book().join(link))
        .collect()
}

#[test]
fn every_chapter_in_the_summary_exists() {
    let chapters = chapters();
    assert!(chapters.len() >= 2, "{chapters:?}");
    for c in chapters {
        assert!(c.is_file(), "the summary names {}, which is missing", c.display());
    }
}

#[test]
fn every_included_listing_and_anchor_exists() {
    let mut includes = 0;
    for chapter in chapters() {
        let text = std::fs::read_to_string(&chapter).expect("a chapter");
        for directive in text.split("{{#include ").skip(1) {
            let target = directive.split("}}").next().expect("a closed include").trim();
            let (file, anchor) = match target.rsplit_once(':') {
                Some((f, a)) => (f, Some(a)),
                None => (target, None),
            };
            let path = chapter.parent().expect("in a folder").join(file);
            let listing = std::fs::read_to_string(&path).unwrap_or_else(|e| {
                panic!("{} includes {}: {e}", chapter.display(), path.display())
            });
            if let Some(a) = anchor {
                for mark in [format!("ANCHOR: {a}"), format!("ANCHOR_END: {a}")] {
                    assert!(
                        listing.contains(&mark),
                        "{} includes anchor `{a}` of {}, which has no `{mark}`",
                        chapter.display(),
                        path.display()
                    );
                }
            }
            includes += 1;
        }
    }
    assert!(includes > 0, "the book includes no listing");
}

#[test]
fn the_book_builds() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../book");
    let mut book = mdbook_driver::MDBook::load(&root).expect("the book loads");
    let out = std::env::temp_dir().join(format!("horus-book-{}", std::process::id()));
    book.config.build.build_dir = out.clone();
    book.build().expect("the book builds");
    let html = std::fs::read_to_string(out.join("getting-started.html")).expect("a chapter page");
    // The included listings are in the page, not the include directives.
    assert!(html.contains("Group::builder"), "the getting-started listing is missing");
    assert!(!html.contains("{{#include"), "an include was left unexpanded");
    for chapter in chapters() {
        let page = out.join(chapter.file_name().expect("a file")).with_extension("html");
        assert!(page.is_file(), "no page {} was built", page.display());
    }
    let _ = std::fs::remove_dir_all(out);
}
