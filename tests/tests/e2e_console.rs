//! The tenant console (`/console/`) in a real headless browser (Debian's
//! chromium through chromedriver), against the fabric's real etcd,
//! controller and agents, with keepalived failing over between two
//! hypervisors:
//!
//! sign in (a wrong token is refused) → the creation wizard: an address
//! given by hand is checked as it is typed (a port's address and another
//! HAVIP's are in use, a gateway reserved, one outside the subnet out of
//! range, a typo no address) and a create at an address in use is not sent
//! → create with two VMs → the detail page shows keepalived's master, then
//! the backup after the master crashes (and the failover history where the
//! controller has it) → rename → unbind a VM and bind it again → edit from
//! the list → fuzzy search and a filter → the Excel download, opened →
//! the API's pages → batch delete across pages with its confirmation.
//!
//! Screenshots of each page: `target/test-artifacts/console/*.png`.
//!
//! Needs root, the built agent and controller (target/release), etcd,
//! keepalived, chromium and chromium-driver (`cargo xtask setup`).

use std::net::IpAddr;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use calamine::Reader;
use havip_tests::browser::{self, click, eval, select, type_into, wait_for, wait_text, Browser};
use havip_tests::fabric::{port_id, Fabric, API_URL, PROJECT_TOKEN, SUBNET};
use havip_tests::keepalived;
use havip_tests::lab::{VIP4, VM1, VM2};
use havip_tests::leftovers;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(20);
const UI: Duration = Duration::from_secs(10);

#[test]
fn the_console_creates_shows_failover_renames_exports_and_deletes() -> Result<()> {
    let shots = browser::artifacts_dir("console")?;
    let mut f = Fabric::build(&[("hv-a", &[VM1]), ("hv-b", &[VM2])])?;
    for h in ["hv-a", "hv-b"] {
        f.host_mut(h).start_agent()?;
    }
    // A HAVIP made through the API: its address is taken.
    let taken: IpAddr = "10.0.6.30".parse()?;
    let db = f.create_vip("db-primary", taken, &[])?;
    let b = Browser::start(&f.ctl, API_URL, &f.dir, shots.clone())?;

    // Sign in: a wrong token is refused with the API's code, then the
    // project's token shows the list.
    b.run(|c| async move {
        c.goto(&format!("{API_URL}/console/")).await?;
        wait_for(&c, "#token", UI).await?;
        type_into(&c, "#token", "not-a-token").await?;
        click(&c, "#login-submit").await?;
        wait_text(&c, "#login-error", UI, |t| t.contains("unauthenticated")).await?;
        anyhow::Ok(())
    })?;
    b.screenshot("01-login-refused")?;
    b.run(|c| async move {
        type_into(&c, "#token", PROJECT_TOKEN).await?;
        click(&c, "#login-submit").await?;
        wait_text(&c, "#total", UI, |t| t.contains("Total 1")).await?;
        wait_text(&c, "#havips tbody", UI, |t| t.contains("db-primary")).await?;
        anyhow::Ok(())
    })?;
    b.screenshot("02-list")?;

    // The wizard: no name is refused; the addresses are checked as typed.
    let vm1_ip = VM1.ipv4.to_string();
    b.run(move |c| async move {
        click(&c, "#new").await?;
        wait_for(&c, "#c-ports input[value=port-vm2]", UI).await?;
        click(&c, "#c-submit").await?;
        wait_text(&c, "#c-error", UI, |t| t.contains("name is required")).await?;
        type_into(&c, "#c-name", "web").await?;
        type_into(&c, "#c-desc", "frontend pair").await?;
        click(&c, "#c-addr-manual").await?;
        type_into(&c, "#c-address", &vm1_ip).await?;
        let warning = wait_text(&c, "#addr-check[data-state=in_use]", UI, |t| {
            t.contains("port port-vm1 of VM vm1")
        })
        .await?;
        println!("in-use warning: {warning}");
        anyhow::Ok(())
    })?;
    b.screenshot("03-wizard-address-in-use")?;
    let db_id = db.clone();
    b.run(move |c| async move {
        type_into(&c, "#c-address", "10.0.6.30").await?;
        wait_text(&c, "#addr-check[data-state=in_use]", UI, |t| {
            t.contains(&db_id) && t.contains("db-primary")
        })
        .await?;
        // Submitting anyway is refused before any request.
        click(&c, "#c-submit").await?;
        wait_text(&c, "#c-error", UI, |t| t.contains("already in use")).await?;
        type_into(&c, "#c-address", "10.0.6").await?;
        wait_text(&c, "#addr-check[data-state=invalid]", UI, |t| {
            t.contains("Not an IP address")
        })
        .await?;
        type_into(&c, "#c-address", "10.0.7.5").await?;
        wait_text(&c, "#addr-check[data-state=out_of_range]", UI, |t| {
            t.contains("not inside 10.0.6.0/24")
        })
        .await?;
        type_into(&c, "#c-address", "10.0.6.1").await?;
        wait_text(&c, "#addr-check[data-state=reserved]", UI, |t| {
            t.contains("gateway")
        })
        .await?;
        type_into(&c, "#c-address", &VIP4.to_string()).await?;
        wait_text(&c, "#addr-check[data-state=free]", UI, |t| {
            t.contains("free")
        })
        .await?;
        click(&c, "#c-ports input[value=port-vm1]").await?;
        click(&c, "#c-ports input[value=port-vm2]").await?;
        wait_text(&c, "#c-ports-count", UI, |t| t.contains("2 / 3")).await?;
        anyhow::Ok(())
    })?;
    b.screenshot("04-wizard-ready")?;
    let vip = b.run(|c| async move {
        click(&c, "#c-submit").await?;
        wait_text(&c, "#flash", UI, |t| t.contains("Created web")).await?;
        wait_text(&c, "#total", UI, |t| t.contains("Total 2")).await?;
        let id = eval(
            &c,
            "const a = [...document.querySelectorAll('#havips a.name-link')].find(a => a.textContent === 'web');
             return a ? a.closest('tr').dataset.id : null;",
            vec![],
        )
        .await?;
        id.as_str().map(str::to_owned).context("no row for web")
    })?;
    let made = f.get_vip(&vip)?;
    ensure!(
        made["address"] == VIP4.to_string()
            && made["description"] == "frontend pair"
            && made["ports"].as_array().map(Vec::len) == Some(2),
        "created: {made}"
    );
    f.wait_status(&vip, "available", WAIT)?;

    // keepalived holds the VIP: the detail page shows the master, then
    // the backup once the master's keepalived crashes.
    let (mut master, backup) = keepalived::start_pair(&f.dir, f.vm("vm1"), f.vm("vm2"))?;
    let id = vip.clone();
    b.run(move |c| async move {
        c.goto(&format!("{API_URL}/console/#/havip/{id}")).await?;
        wait_text(&c, "#master-port", WAIT, |t| t == "port-vm1").await?;
        wait_text(&c, "#master-vm", UI, |t| t == "vm1").await?;
        anyhow::Ok(())
    })?;
    b.screenshot("05-detail-master")?;
    master.crash(f.vm("vm1"))?;
    let history = b.run(|c| async move {
        wait_text(&c, "#master-port", WAIT, |t| t == "port-vm2").await?;
        wait_text(&c, "#master-vm", UI, |t| t == "vm2").await?;
        // The failover history, where the controller has it
        // (`GET /v1/havips/{id}/events`): it names the new master.
        let shown = eval(
            &c,
            "return !document.querySelector('#events-card').hidden;",
            vec![],
        )
        .await?;
        let shown = shown.as_bool() == Some(true);
        if shown {
            wait_text(&c, "#events", WAIT, |t| t.contains("port-vm2")).await?;
        }
        anyhow::Ok(shown)
    })?;
    b.screenshot("06-detail-after-failover")?;
    println!("failover history section shown: {history}");
    let after = f.get_vip(&vip)?;
    ensure!(after["master"]["port"] == port_id(&VM2), "API: {after}");

    // Rename (name and description) in the edit dialog.
    b.run(|c| async move {
        click(&c, "#edit-open").await?;
        type_into(&c, "#e-name", "web-renamed").await?;
        type_into(&c, "#e-desc", "renamed in the console").await?;
        anyhow::Ok(())
    })?;
    b.screenshot("07-edit")?;
    b.run(|c| async move {
        click(&c, "#e-save").await?;
        wait_text(&c, "#d-name", UI, |t| t == "web-renamed").await?;
        wait_text(&c, "#d-desc", UI, |t| t == "renamed in the console").await?;
        anyhow::Ok(())
    })?;
    let renamed = f.get_vip(&vip)?;
    ensure!(
        renamed["name"] == "web-renamed" && renamed["description"] == "renamed in the console",
        "{renamed}"
    );

    // Unbind vm1 (confirmed), then bind it again with the VMs editor.
    b.run(|c| async move {
        click(&c, "#bound-table tr[data-port=port-vm1] button.unbind").await?;
        wait_for(&c, "#confirm[open]", UI).await?;
        click(&c, "#confirm-ok").await?;
        wait_text(&c, "#bound-count", UI, |t| t.starts_with("1 / 3")).await?;
        wait_for(&c, "#d-ports input[value=port-vm1]:not(:checked)", UI).await?;
        anyhow::Ok(())
    })?;
    let one = f.get_vip(&vip)?;
    ensure!(
        one["ports"] == json!([{"port": "port-vm2", "vm": "vm2"}]),
        "after unbinding vm1: {}",
        one["ports"]
    );
    b.run(|c| async move {
        click(&c, "#d-ports input[value=port-vm1]").await?;
        click(&c, "#save-ports").await?;
        wait_text(&c, "#bound-count", UI, |t| t.starts_with("2 / 3")).await?;
        anyhow::Ok(())
    })?;
    b.screenshot("08-detail-vms")?;
    let two = f.get_vip(&vip)?;
    ensure!(
        two["ports"].as_array().map(Vec::len) == Some(2),
        "after binding vm1 again: {}",
        two["ports"]
    );

    // The edit button next to a name in the list: a description for the
    // HAVIP made through the API.
    let db_row = format!("#havips tr[data-id={db}]");
    b.run(move |c| async move {
        click(&c, "#back").await?;
        wait_text(&c, "#total", UI, |t| t.contains("Total 2")).await?;
        click(&c, &format!("{db_row} button.edit")).await?;
        wait_for(&c, "#edit[open]", UI).await?;
        type_into(&c, "#e-desc", "primary database").await?;
        click(&c, "#e-save").await?;
        wait_text(&c, &format!("{db_row} .desc"), UI, |t| {
            t == "primary database"
        })
        .await?;
        anyhow::Ok(())
    })?;
    ensure!(f.get_vip(&db)?["description"] == "primary database");

    // Fuzzy search (case-insensitive, a part of the name) and a filter.
    b.run(|c| async move {
        type_into(&c, "#search", "RENAMED").await?;
        click(&c, "#do-search").await?;
        wait_text(&c, "#total", UI, |t| t.contains("Total 1")).await?;
        wait_text(&c, "#havips tbody", UI, |t| {
            t.contains("web-renamed") && !t.contains("db-primary")
        })
        .await?;
        anyhow::Ok(())
    })?;
    b.screenshot("09-search")?;
    b.run(|c| async move {
        click(&c, "#reset").await?;
        wait_text(&c, "#total", UI, |t| t.contains("Total 2")).await?;
        select(&c, "#f-status", "failed").await?;
        wait_for(&c, "#no-havips", UI).await?;
        select(&c, "#f-ipver", "ipv4").await?;
        click(&c, "#reset").await?;
        wait_text(&c, "#total", UI, |t| t.contains("Total 2")).await?;
        // The Excel download.
        click(&c, "#export").await?;
        anyhow::Ok(())
    })?;
    let xlsx = b.wait_download("havips.xlsx", WAIT)?;
    let mut book = calamine::open_workbook_auto(&xlsx).context("open the download")?;
    let sheet = book.worksheet_range_at(0).context("no sheet")??;
    let rows: Vec<Vec<String>> = sheet
        .rows()
        .map(|r| r.iter().map(|c| c.to_string()).collect())
        .collect();
    ensure!(rows.len() == 3, "header and 2 rows: {rows:?}");
    let web = rows
        .iter()
        .find(|r| r.contains(&"web-renamed".to_string()))
        .with_context(|| format!("no web-renamed row in {rows:?}"))?;
    ensure!(
        web.contains(&VIP4.to_string()) && web.contains(&vip) && web.contains(&SUBNET.to_string()),
        "{web:?}"
    );
    ensure!(rows.iter().any(|r| r.contains(&db)), "{rows:?}");
    println!("downloaded {} ({} rows)", xlsx.display(), rows.len() - 1);

    // The API's pages: nine more HAVIPs (allocated addresses), ten a page;
    // the batch selection holds across pages.
    for i in 0..9 {
        let body = json!({"name": format!("bulk-{i}"), "subnet": SUBNET}).to_string();
        let (status, reply) = f.http(
            "POST",
            &format!("{API_URL}/v1/havips"),
            Some(PROJECT_TOKEN),
            Some(&body),
        )?;
        ensure!(status == 201, "create bulk-{i}: {status} {reply}");
    }
    b.run(|c| async move {
        click(&c, "#reset").await?;
        wait_text(&c, "#total", UI, |t| t.contains("Total 11")).await?;
        select(&c, "#page-size", "10").await?;
        wait_text(&c, "#page", UI, |t| t == "1 / 2").await?;
        let rows = "return document.querySelectorAll('#havips tbody tr[data-id]').length;";
        ensure!(eval(&c, rows, vec![]).await? == json!(10), "page 1");
        click(&c, "#select-all").await?;
        wait_text(&c, "#batch-delete", UI, |t| t.contains("(10)")).await?;
        anyhow::Ok(())
    })?;
    b.screenshot("10-page-1-of-2")?;
    b.run(|c| async move {
        click(&c, "#next").await?;
        wait_text(&c, "#page", UI, |t| t == "2 / 2").await?;
        let rows = "return document.querySelectorAll('#havips tbody tr[data-id]').length;";
        ensure!(eval(&c, rows, vec![]).await? == json!(1), "page 2");
        // The oldest, the one made first, is last.
        wait_text(&c, "#havips tbody", UI, |t| t.contains("db-primary")).await?;
        click(&c, "#select-all").await?;
        wait_text(&c, "#batch-delete", UI, |t| t.contains("(11)")).await?;
        click(&c, "#batch-delete").await?;
        wait_for(&c, "#confirm[open]", UI).await?;
        wait_text(&c, "#confirm-list", UI, |t| {
            t.contains("web-renamed") && t.contains("db-primary") && t.contains("bulk-8")
        })
        .await?;
        let items = "return document.querySelectorAll('#confirm-list li').length;";
        ensure!(eval(&c, items, vec![]).await? == json!(11), "confirm list");
        anyhow::Ok(())
    })?;
    b.screenshot("11-batch-delete-confirm")?;
    b.run(|c| async move {
        click(&c, "#confirm-ok").await?;
        wait_text(&c, "#flash", UI, |t| t.contains("Deleted 11")).await?;
        wait_for(&c, "#no-havips", UI).await?;
        anyhow::Ok(())
    })?;
    b.screenshot("12-after-batch-delete")?;
    let (status, body) = f.http(
        "GET",
        &format!("{API_URL}/v1/havips"),
        Some(PROJECT_TOKEN),
        None,
    )?;
    ensure!(
        status == 200 && body.contains("\"total\":0"),
        "{status} {body}"
    );
    println!("screenshots: {}", shots.display());

    drop(b);
    drop(master);
    drop(backup);
    drop(f);
    let left = leftovers();
    ensure!(left.is_empty(), "left behind: {left:?}");
    Ok(())
}
