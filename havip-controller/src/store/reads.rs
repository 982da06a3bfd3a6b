//! HAVIP views: one, all in scope, a page of them. Corrupt records are
//! skipped (logged and counted), never an error for the caller.

use std::collections::HashMap;

use havip_schema::keys::{self, Key};
use havip_schema::records;

use super::{Scope, Store};
use crate::error::{Error, Result};
use crate::model::{Havip, HavipEip, HavipPage, ListQuery, MAX_PAGE_SIZE, MAX_QUERY};
use crate::rules;

impl Store {
    pub async fn get_havip(&self, scope: &Scope, id: &str) -> Result<Havip> {
        havip_schema::rules::check_id("havip", id)?;
        match self.read::<records::Vip>(&keys::vip(id)).await? {
            Some((v, _)) if scope.sees(&v.project) => self.view(v, scope).await,
            _ => Err(Error::not_found(format!("havip {id} not found"))),
        }
    }

    /// The view of `vip` for `scope`: its acks and owner read.
    pub(super) async fn view(&self, vip: records::Vip, scope: &Scope) -> Result<Havip> {
        let mut reports = self.reports_of(&vip).await?;
        let acks = reports.acks_of(&vip.id);
        let owner = reports.owner(&vip.id);
        let eip = self.eip_of_vip(&vip.id).await?;
        let mut view = Havip::view(vip, &acks, owner, scope);
        view.eip = eip.map(|e| HavipEip {
            id: e.eip,
            address: e.address,
        });
        Ok(view)
    }

    /// Every HAVIP in scope with computed fields, newest first.
    pub async fn all_havips(&self, scope: &Scope) -> Result<Vec<Havip>> {
        let (vips, _) = self.list::<records::Vip>(&keys::vips()).await?;
        let (mut reports, _) = self.all_reports().await?;
        let (eips, _) = self.list::<records::VipEip>(&keys::vip_eips()).await?;
        let mut eips: HashMap<String, records::VipEip> = eips
            .into_iter()
            .filter_map(|(k, e, _)| match Key::parse(&k)? {
                Key::VipEip(vip) => Some((vip.to_string(), e)),
                _ => None,
            })
            .collect();
        let empty = HashMap::new();
        let mut out: Vec<Havip> = vips
            .into_iter()
            .map(|(_, v, _)| v)
            .filter(|v| scope.sees(&v.project))
            .map(|v| {
                let owner = reports.owner(&v.id);
                let acks = reports.acks.get(&v.id).unwrap_or(&empty);
                let eip = eips.remove(&v.id);
                let mut view = Havip::view(v, acks, owner, scope);
                view.eip = eip.map(|e| HavipEip {
                    id: e.eip,
                    address: e.address,
                });
                view
            })
            .collect();
        out.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    /// One page of the HAVIPs in scope that pass the filters.
    pub async fn list_havips(&self, scope: &Scope, q: &ListQuery) -> Result<HavipPage> {
        let page = q.page.unwrap_or(1);
        let page_size = q.page_size.unwrap_or(20);
        if page == 0 {
            return Err(Error::invalid_argument("page starts at 1"));
        }
        if page_size == 0 || page_size > MAX_PAGE_SIZE {
            return Err(Error::invalid_argument(format!(
                "page_size must be 1..={MAX_PAGE_SIZE}"
            )));
        }
        if q.q.as_ref().is_some_and(|t| t.chars().count() > MAX_QUERY) {
            return Err(Error::invalid_argument(format!(
                "q is longer than {MAX_QUERY} characters"
            )));
        }
        let matching: Vec<Havip> = self
            .all_havips(scope)
            .await?
            .into_iter()
            .filter(|v| q.status.is_none_or(|s| s == v.status))
            .filter(|v| q.subnet.as_ref().is_none_or(|s| *s == v.subnet))
            .filter(|v| q.vpc.as_ref().is_none_or(|n| *n == v.vpc))
            .filter(|v| q.ip_version.is_none_or(|ver| ver == v.ip_version))
            .filter(|v| {
                q.vm.as_ref()
                    .is_none_or(|vm| v.ports.iter().any(|b| b.vm == *vm))
            })
            .filter(|v| {
                q.q.as_ref()
                    .is_none_or(|text| rules::matches_query(v, text))
            })
            .collect();
        let total = matching.len() as u64;
        let items = matching
            .into_iter()
            .skip((page as usize - 1).saturating_mul(page_size as usize))
            .take(page_size as usize)
            .collect();
        Ok(HavipPage {
            items,
            total,
            page,
            page_size,
        })
    }
}
