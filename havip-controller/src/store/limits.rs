//! The limits in effect for a project, and the operators' overrides (per
//! project, per VIP; per port is in [`super::ports`]).

use havip_schema::guards::unchanged;
use havip_schema::keys;
use havip_schema::limits::{self, Limits, ProjectLimits};
use havip_schema::records;

use super::{backoff, lost_race, put, Scope, Store, RETRIES};
use crate::error::{Error, Result};
use crate::model::{EffectiveLimits, Havip, VipLimits};

impl Store {
    /// A project's own limits and the key's mod revision (0: none set). A
    /// corrupt record counts as none set.
    pub(super) async fn project_limits_rev(&self, project: &str) -> Result<(ProjectLimits, i64)> {
        let key = keys::project_limits(project);
        match self.get::<ProjectLimits>(&key).await {
            Ok(found) => Ok(found.unwrap_or_default()),
            Err(e) if e.code == crate::ErrorCode::CorruptRecord => {
                let rev = self
                    .client
                    .kv_client()
                    .get(key.as_str(), None)
                    .await?
                    .kvs()
                    .first()
                    .map_or(0, |kv| kv.mod_revision());
                Ok((ProjectLimits::default(), rev))
            }
            Err(e) => Err(e),
        }
    }

    pub(super) fn effective(&self, l: &ProjectLimits) -> Limits {
        self.defaults.with(l)
    }

    pub async fn get_project_limits(
        &self,
        scope: &Scope,
        project: &str,
    ) -> Result<EffectiveLimits> {
        if !scope.sees(project) {
            return Err(Error::not_found(format!("project {project} not found")));
        }
        let (l, _) = self.project_limits_rev(project).await?;
        Ok(self.effective(&l).into())
    }

    /// Operator: the limits of a project (`None` = default). Lowering a limit
    /// keeps existing bindings and HAVIPs but refuses new ones above it.
    pub async fn set_project_limits(
        &self,
        project: &str,
        limits: &ProjectLimits,
    ) -> Result<EffectiveLimits> {
        havip_schema::rules::check_id("project", project)?;
        limits.check()?;
        self.client
            .kv_client()
            .put(
                keys::project_limits(project),
                serde_json::to_vec(limits).expect("limits serialize"),
                None,
            )
            .await?;
        Ok(self.effective(limits).into())
    }

    /// Operator override of the ports-per-VIP limit of one VIP.
    pub async fn set_vip_limits(&self, id: &str, req: &VipLimits) -> Result<Havip> {
        limits::check("ports_per_vip", req.ports_per_vip)?;
        let key = keys::vip(id);
        for attempt in 0..RETRIES {
            let Some((mut vip, rev)) = self.get::<records::Vip>(&key).await? else {
                return Err(Error::not_found(format!("havip {id} not found")));
            };
            vip.ports_per_vip = req.ports_per_vip;
            if self
                .commit(vec![unchanged(&key, rev)], vec![put(&key, &vip)])
                .await?
            {
                return self.view(vip, &Scope::Operator).await;
            }
            backoff(attempt).await;
        }
        Err(lost_race("set havip limits"))
    }
}
