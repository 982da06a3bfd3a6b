//! A typed client of the HTTP API (what `havipctl` speaks).

use reqwest::{Method, RequestBuilder, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Error, ErrorBody};
use crate::model::*;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The controller answered with an API error.
    #[error("{status}: {} ({})", .error.message, .error.code)]
    Api { status: StatusCode, error: Error },
    #[error("cannot reach the controller: {0}")]
    Http(#[from] reqwest::Error),
    #[error("no PEM certificate (-----BEGIN CERTIFICATE-----) in the CA file")]
    NoCaCertificate,
    #[error("unexpected answer {status}: {body}")]
    Unexpected { status: StatusCode, body: String },
}

pub type Result<T, E = ClientError> = std::result::Result<T, E>;

#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Client {
    /// `base` like `http://127.0.0.1:8780`.
    pub fn new(base: &str, token: Option<String>) -> Self {
        Client {
            http: reqwest::Client::new(),
            base: base.trim_end_matches('/').to_string(),
            token,
        }
    }

    /// [`Client::new`] that also trusts the CA certificate(s) in `pem`.
    pub fn with_ca_pem(base: &str, token: Option<String>, pem: &[u8]) -> Result<Self> {
        let mut http = reqwest::Client::builder();
        let cas = reqwest::Certificate::from_pem_bundle(pem)?;
        if cas.is_empty() {
            return Err(ClientError::NoCaCertificate);
        }
        for ca in cas {
            http = http.add_root_certificate(ca);
        }
        Ok(Client {
            http: http.build()?,
            base: base.trim_end_matches('/').to_string(),
            token,
        })
    }

    fn req(&self, method: Method, path: &str) -> RequestBuilder {
        let r = self.http.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    async fn raw(&self, r: RequestBuilder) -> Result<reqwest::Response> {
        let resp = r.send().await?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let body = resp.text().await?;
        match serde_json::from_str::<ErrorBody>(&body) {
            Ok(e) => Err(ClientError::Api {
                status,
                error: e.error,
            }),
            Err(_) => Err(ClientError::Unexpected { status, body }),
        }
    }

    async fn json<T: DeserializeOwned>(&self, r: RequestBuilder) -> Result<T> {
        Ok(self.raw(r).await?.json().await?)
    }

    async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: &B,
    ) -> Result<T> {
        self.json(self.req(method, path).json(body)).await
    }

    pub async fn put_vpc(&self, id: &str, req: &PutVpc) -> Result<Vpc> {
        self.call(Method::PUT, &format!("/v1/vpcs/{id}"), req).await
    }

    pub async fn put_subnet(&self, id: &str, req: &PutSubnet) -> Result<Subnet> {
        self.call(Method::PUT, &format!("/v1/subnets/{id}"), req)
            .await
    }

    pub async fn put_port(&self, id: &str, req: &PutPort) -> Result<Port> {
        self.call(Method::PUT, &format!("/v1/ports/{id}"), req)
            .await
    }

    pub async fn list_ports(&self, q: &PortQuery) -> Result<Vec<Port>> {
        self.json(self.req(Method::GET, "/v1/ports").query(q)).await
    }

    pub async fn create_havip(&self, req: &CreateHavip) -> Result<Havip> {
        self.call(Method::POST, "/v1/havips", req).await
    }

    /// A create with an `Idempotency-Key` header: a retry answers the
    /// first create's HAVIP.
    pub async fn create_havip_idempotent(&self, req: &CreateHavip, key: &str) -> Result<Havip> {
        self.json(
            self.req(Method::POST, "/v1/havips")
                .header("Idempotency-Key", key)
                .json(req),
        )
        .await
    }

    /// The stored records that cannot be read (operator).
    pub async fn corrupt_records(&self) -> Result<CorruptRecords> {
        self.json(self.req(Method::GET, "/v1/records/corrupt"))
            .await
    }

    pub async fn list_havips(&self, q: &ListQuery) -> Result<HavipPage> {
        self.json(self.req(Method::GET, "/v1/havips").query(q))
            .await
    }

    /// `GET /v1/havips/{id}/events`: its owner changes, newest first.
    pub async fn owner_changes(&self, id: &str) -> Result<crate::history::OwnerChanges> {
        self.json(self.req(Method::GET, &format!("/v1/havips/{id}/events")))
            .await
    }

    pub async fn get_havip(&self, id: &str) -> Result<Havip> {
        self.json(self.req(Method::GET, &format!("/v1/havips/{id}")))
            .await
    }

    pub async fn update_havip(&self, id: &str, req: &UpdateHavip) -> Result<Havip> {
        self.call(Method::PATCH, &format!("/v1/havips/{id}"), req)
            .await
    }

    pub async fn delete_havip(&self, id: &str) -> Result<()> {
        self.raw(self.req(Method::DELETE, &format!("/v1/havips/{id}")))
            .await?;
        Ok(())
    }

    pub async fn batch_delete(&self, ids: &[String]) -> Result<BatchDeleteResult> {
        let body = BatchDelete { ids: ids.to_vec() };
        self.call(Method::POST, "/v1/havips/batch-delete", &body)
            .await
    }

    pub async fn bind(&self, id: &str, ports: &[String]) -> Result<Havip> {
        let body = PortsRequest {
            ports: ports.to_vec(),
        };
        self.call(Method::POST, &format!("/v1/havips/{id}/ports"), &body)
            .await
    }

    pub async fn replace_ports(&self, id: &str, ports: &[String]) -> Result<Havip> {
        let body = PortsRequest {
            ports: ports.to_vec(),
        };
        self.call(Method::PUT, &format!("/v1/havips/{id}/ports"), &body)
            .await
    }

    pub async fn unbind(&self, id: &str, port: &str) -> Result<Havip> {
        self.json(self.req(Method::DELETE, &format!("/v1/havips/{id}/ports/{port}")))
            .await
    }

    pub async fn export(&self, format: ExportFormat) -> Result<Vec<u8>> {
        let q = ExportQuery {
            format: Some(format),
        };
        let resp = self
            .raw(self.req(Method::GET, "/v1/havips/export").query(&q))
            .await?;
        Ok(resp.bytes().await?.to_vec())
    }

    pub async fn set_vip_limits(&self, id: &str, req: &VipLimits) -> Result<Havip> {
        self.call(Method::PUT, &format!("/v1/havips/{id}/limits"), req)
            .await
    }

    pub async fn set_port_limits(&self, id: &str, req: &PortLimits) -> Result<Port> {
        self.call(Method::PUT, &format!("/v1/ports/{id}/limits"), req)
            .await
    }

    pub async fn get_project_limits(&self, project: &str) -> Result<EffectiveLimits> {
        self.json(self.req(Method::GET, &format!("/v1/limits/projects/{project}")))
            .await
    }

    pub async fn set_project_limits(
        &self,
        project: &str,
        req: &ProjectLimits,
    ) -> Result<EffectiveLimits> {
        self.call(Method::PUT, &format!("/v1/limits/projects/{project}"), req)
            .await
    }
    // ---- EIPs ----

    pub async fn create_eip_pool(&self, req: &CreateEipPool) -> Result<EipPool> {
        self.call(Method::POST, "/v1/eip-pools", req).await
    }

    pub async fn list_eip_pools(&self) -> Result<Vec<EipPool>> {
        self.json(self.req(Method::GET, "/v1/eip-pools")).await
    }

    pub async fn get_eip_pool(&self, id: &str) -> Result<EipPool> {
        self.json(self.req(Method::GET, &format!("/v1/eip-pools/{id}")))
            .await
    }

    pub async fn delete_eip_pool(&self, id: &str) -> Result<()> {
        self.raw(self.req(Method::DELETE, &format!("/v1/eip-pools/{id}")))
            .await?;
        Ok(())
    }

    pub async fn allocate_eip(&self, req: &AllocateEip) -> Result<Eip> {
        self.call(Method::POST, "/v1/eips", req).await
    }

    pub async fn list_eips(&self, q: &EipQuery) -> Result<Vec<Eip>> {
        self.json(self.req(Method::GET, "/v1/eips").query(q)).await
    }

    pub async fn get_eip(&self, id: &str) -> Result<Eip> {
        self.json(self.req(Method::GET, &format!("/v1/eips/{id}")))
            .await
    }

    pub async fn release_eip(&self, id: &str) -> Result<()> {
        self.raw(self.req(Method::DELETE, &format!("/v1/eips/{id}")))
            .await?;
        Ok(())
    }

    pub async fn associate_eip(&self, id: &str, havip: &str) -> Result<Eip> {
        let body = AssociateEip {
            havip: havip.to_string(),
        };
        self.call(Method::PUT, &format!("/v1/eips/{id}/association"), &body)
            .await
    }

    pub async fn disassociate_eip(&self, id: &str) -> Result<Eip> {
        self.json(self.req(Method::DELETE, &format!("/v1/eips/{id}/association")))
            .await
    }

    pub async fn get_eip_limits(&self, project: &str) -> Result<EffectiveEipLimits> {
        self.json(self.req(Method::GET, &format!("/v1/limits/eip-projects/{project}")))
            .await
    }

    pub async fn set_eip_limits(
        &self,
        project: &str,
        req: &EipLimits,
    ) -> Result<EffectiveEipLimits> {
        self.call(
            Method::PUT,
            &format!("/v1/limits/eip-projects/{project}"),
            req,
        )
        .await
    }
}
