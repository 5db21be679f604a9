//! Bulk Data export (Bulk Data Access IG 2.0): `$export` at system, `Patient`
//! and `Group/[id]` level, run as a background job whose state lives in the
//! database (`export_jobs`), so any node answers the status URL. The output,
//! one NDJSON file per resource type, is written in parts of at most
//! `fhir.export_part_bytes` (bytes, not resources: memory stays bounded
//! whatever the resources weigh), each sealed under the tenant's data key
//! before it reaches the store, and served back one part at a time.

use hearth_store::Store;
use hearth_store::schema::{ExportJob, ExportPart};
use hearth_store::search::{Condition, Cursor, SearchQuery};

use crate::error::ApiError;
use crate::json::{Json, Object};
use crate::service::Service;
use crate::time::now_micros;

/// Resources read per store query while exporting.
const PAGE: u32 = 500;

/// A running job that has not recorded progress for this long stopped (its
/// node went away): its status says so.
const STALE_MICROS: i64 = 10 * 60 * 1_000_000;

/// Which resources an export covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Level {
    System,
    /// Every patient's compartment.
    Patient,
    /// The compartments of a Group's member patients.
    Group(String),
}

/// A kick-off request, checked.
#[derive(Clone, Debug)]
pub struct ExportRequest {
    pub level: Level,
    /// `_type` (empty: every type the level covers).
    pub types: Vec<String>,
    /// `_since`, in microseconds.
    pub since: Option<i64>,
    /// `_typeFilter`: per type, searches whose matches are exported (any of
    /// them) instead of every resource of the type.
    pub type_filters: Vec<(String, Vec<(String, String)>)>,
    /// The kick-off URL, for the manifest.
    pub request_url: String,
}

/// The types a Patient or Group export covers: those of the Patient
/// compartment, and Patient.
fn patient_types() -> Vec<String> {
    let registry = crate::fhir::search_params::r4();
    crate::fhir::model::r4()
        .resource_types()
        .iter()
        .filter(|t| **t == "Patient" || !registry.compartment_params("Patient", t).is_empty())
        .map(|t| (*t).to_owned())
        .collect()
}

fn job_id_ok(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

fn not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("no export {id}"))
}

/// The purpose a part is sealed for: bound to its job, file and position.
fn part_purpose(job: &str, file: &str, part: i64) -> String {
    format!("export/{job}/{file}/{part}")
}

fn text(o: &Object, name: &str) -> Option<String> {
    o.get(name).and_then(Json::as_str).map(str::to_owned)
}

impl Service {
    /// Starts an export: records the job and runs it in the background.
    /// Returns the job's id.
    pub async fn start_export(
        &self,
        tenant: &str,
        request: ExportRequest,
        part_bytes: usize,
    ) -> Result<String, ApiError> {
        let model = crate::fhir::model::r4();
        let covered = match request.level {
            Level::System => model
                .resource_types()
                .iter()
                .map(|t| (*t).to_owned())
                .collect(),
            Level::Patient | Level::Group(_) => patient_types(),
        };
        let mut types = if request.types.is_empty() {
            covered.clone()
        } else {
            for t in &request.types {
                if !model.is_resource_type(t) {
                    return Err(ApiError::invalid(format!(
                        "_type: {t} is not an R4 resource type"
                    )));
                }
                if !covered.contains(t) {
                    return Err(ApiError::invalid(format!(
                        "_type: {t} is not in the Patient compartment, so not in a {} export",
                        if request.level == Level::Patient {
                            "Patient"
                        } else {
                            "Group"
                        }
                    )));
                }
            }
            request.types.clone()
        };
        types.sort();
        types.dedup();
        // Filters are checked now (a bad one is the client's error, not the job's).
        let searcher = self.searcher(tenant);
        for (t, criteria) in &request.type_filters {
            if !types.contains(t) {
                return Err(ApiError::invalid(format!(
                    "_typeFilter names {t}, which this export does not include"
                )));
            }
            searcher.conditions(t, criteria).await?;
        }
        let members = match &request.level {
            Level::Group(id) => Some(self.group_members(tenant, id).await?),
            _ => None,
        };
        let id = crate::service::new_id()?;
        let now = now_micros();
        let mut params = Object::default();
        params.push(
            "level",
            Json::string(match &request.level {
                Level::System => "system",
                Level::Patient => "patient",
                Level::Group(_) => "group",
            }),
        );
        let filters = request
            .type_filters
            .iter()
            .map(|(t, c)| {
                let mut o = Object::default();
                o.push("type", Json::string(t.clone()));
                o.push(
                    "criteria",
                    Json::Array(
                        c.iter()
                            .map(|(k, v)| {
                                Json::Array(vec![Json::string(k.clone()), Json::string(v.clone())])
                            })
                            .collect(),
                    ),
                );
                Json::Object(o)
            })
            .collect();
        params.push("typeFilters", Json::Array(filters));
        let job = ExportJob {
            tenant: tenant.to_owned(),
            id: id.clone(),
            status: "accepted".to_owned(),
            request: request.request_url.clone(),
            params: Json::Object(params).to_text(),
            transaction_time: now,
            progress: "accepted".to_owned(),
            output: "[]".to_owned(),
            error: String::new(),
            created_at: now,
            updated_at: now,
        };
        self.store().save_export(job.clone()).await?;
        let plan = Plan {
            types,
            since: request.since,
            filters: request.type_filters,
            members,
            level: request.level,
            part_bytes: part_bytes.max(1),
        };
        let service = self.clone();
        tokio::spawn(async move {
            if let Err(e) = service.run_export(job.clone(), &plan).await {
                tracing::error!(export = %job.id, error = %e, "an export failed");
                if let Ok(Some(mut failed)) = service.store().export_job(&job.tenant, &job.id).await
                    && failed.status != "cancelled"
                {
                    failed.status = "failed".to_owned();
                    failed.error = e
                        .issues
                        .first()
                        .map_or_else(String::new, |i| i.diagnostics.clone());
                    failed.updated_at = now_micros();
                    let _ = service.store().save_export(failed).await;
                }
            }
        });
        Ok(id)
    }

    /// The member patients of a Group (`member.entity` references to Patients).
    async fn group_members(&self, tenant: &str, id: &str) -> Result<Vec<String>, ApiError> {
        let group = self.read(tenant, "Group", id).await?;
        let json = crate::json::parse(&group.body)
            .map_err(|_| ApiError::internal("a stored Group is not JSON"))?;
        let mut ids = Vec::new();
        if let Json::Object(o) = &json
            && let Some(Json::Array(members)) = o.get("member")
        {
            for m in members {
                if let Json::Object(m) = m
                    && let Some(Json::Object(entity)) = m.get("entity")
                    && let Some(r) = text(entity, "reference")
                    && let Some(pid) = r.strip_prefix("Patient/")
                    && !pid.contains('/')
                {
                    ids.push(pid.to_owned());
                }
            }
        }
        ids.sort();
        ids.dedup();
        Ok(ids)
    }

    /// An export's job as it stands (a running job whose node stopped
    /// reporting is answered as failed).
    pub async fn export_status(&self, tenant: &str, id: &str) -> Result<ExportJob, ApiError> {
        if !job_id_ok(id) {
            return Err(not_found(id));
        }
        let mut job = self
            .store()
            .export_job(tenant, id)
            .await?
            .filter(|j| j.status != "cancelled")
            .ok_or_else(|| not_found(id))?;
        if matches!(job.status.as_str(), "accepted" | "running")
            && now_micros() - job.updated_at > STALE_MICROS
        {
            job.status = "failed".to_owned();
            job.error = "the export stopped before it was complete (its server went away); \
                         start a new one"
                .to_owned();
        }
        Ok(job)
    }

    /// Cancels an export (or removes a finished one): its files go, and its
    /// status URL answers 404 from then on.
    pub async fn cancel_export(&self, tenant: &str, id: &str) -> Result<(), ApiError> {
        let mut job = self.export_status(tenant, id).await?;
        job.status = "cancelled".to_owned();
        job.updated_at = now_micros();
        self.store().save_export(job).await?;
        self.store().delete_export(tenant, id, false).await?;
        Ok(())
    }

    /// Part `part` of an export's file, decrypted; None past the last part.
    pub async fn export_file_part(
        &self,
        tenant: &str,
        id: &str,
        file: &str,
        part: i64,
    ) -> Result<Option<Vec<u8>>, ApiError> {
        let Some(sealed) = self.store().export_part(tenant, id, file, part).await? else {
            return Ok(None);
        };
        self.open_sealed(tenant, &part_purpose(id, file, part), &sealed)
            .map(Some)
            .ok_or_else(|| {
                ApiError::internal(format!(
                    "export {id} file {file} part {part} failed its integrity check"
                ))
            })
    }

    async fn run_export(&self, mut job: ExportJob, plan: &Plan) -> Result<(), ApiError> {
        let tenant = job.tenant.clone();
        job.status = "running".to_owned();
        job.updated_at = now_micros();
        self.store().save_export(job.clone()).await?;
        let mut output = Vec::new();
        let as_of = job.transaction_time;
        for (n, t) in plan.types.iter().enumerate() {
            job.progress = format!("{} of {} types, writing {t}", n, plan.types.len());
            let mut writer = PartWriter {
                service: self,
                tenant: &tenant,
                job: &mut job,
                file: t,
                part: 0,
                buffer: Vec::new(),
                limit: plan.part_bytes,
                lines: 0,
            };
            let filters: Vec<&Vec<(String, String)>> = plan
                .filters
                .iter()
                .filter(|(ft, _)| ft == t)
                .map(|(_, c)| c)
                .collect();
            // With filters, a resource matching several is exported once:
            // pass k takes filter k's matches that no earlier filter has.
            let mut passes: Vec<Vec<Condition>> = Vec::new();
            if filters.is_empty() {
                passes.push(Vec::new());
            } else {
                let searcher = self.searcher(&tenant);
                let mut earlier: Vec<Condition> = Vec::new();
                for criteria in filters {
                    let this = Condition::AllOf(searcher.conditions(t, criteria).await?);
                    let mut pass = vec![this.clone()];
                    pass.extend(earlier.iter().map(|c| Condition::Not(Box::new(c.clone()))));
                    passes.push(pass);
                    earlier.push(this);
                }
            }
            let scope = match (&plan.level, t.as_str()) {
                (Level::System, _) | (Level::Patient, "Patient") => None,
                (Level::Patient, _) => Some(Condition::InCompartment {
                    compartment: "Patient".to_owned(),
                    ids: None,
                }),
                (Level::Group(_), "Patient") => {
                    Some(Condition::Id(plan.members.clone().unwrap_or_default()))
                }
                (Level::Group(_), _) => Some(Condition::InCompartment {
                    compartment: "Patient".to_owned(),
                    ids: plan.members.clone(),
                }),
            };
            for mut conditions in passes {
                conditions.extend(scope.clone());
                let mut after: Option<Cursor> = None;
                loop {
                    let q = SearchQuery {
                        res_type: t.clone(),
                        conditions: conditions.clone(),
                        sort: Vec::new(),
                        after: after.clone(),
                        limit: PAGE,
                        drive_below: hearth_store::search::DEFAULT_DRIVE_BELOW,
                    };
                    let page = self.search(&tenant, &q).await?;
                    let full = page.len() == PAGE as usize;
                    after = page.last().map(|(_, c)| c.clone());
                    for (r, _) in page {
                        // As of the kick-off, and changed since `_since`.
                        if r.last_updated > as_of || plan.since.is_some_and(|s| r.last_updated < s)
                        {
                            continue;
                        }
                        if !writer.line(&r.body).await? {
                            return Ok(()); // cancelled
                        }
                    }
                    if !full {
                        break;
                    }
                }
            }
            if !writer.flush().await? {
                return Ok(());
            }
            if writer.lines > 0 {
                let mut o = Object::default();
                o.push("type", Json::string(t.clone()));
                o.push("count", Json::Number(writer.lines.to_string().into()));
                output.push(Json::Object(o));
            }
            job.progress = format!("{} of {} types", n + 1, plan.types.len());
            job.updated_at = now_micros();
            if !self.still_wanted(&tenant, &job.id).await? {
                return Ok(());
            }
            self.store().save_export(job.clone()).await?;
        }
        job.status = "done".to_owned();
        job.progress = "done".to_owned();
        job.output = Json::Array(output).to_text();
        job.updated_at = now_micros();
        if self.still_wanted(&tenant, &job.id).await? {
            self.store().save_export(job).await?;
        }
        Ok(())
    }

    /// Whether the job has not been cancelled.
    async fn still_wanted(&self, tenant: &str, id: &str) -> Result<bool, ApiError> {
        Ok(self
            .store()
            .export_job(tenant, id)
            .await?
            .is_some_and(|j| j.status != "cancelled"))
    }
}

/// What a job does, worked out at kick-off.
struct Plan {
    types: Vec<String>,
    since: Option<i64>,
    filters: Vec<(String, Vec<(String, String)>)>,
    /// A Group's member patients.
    members: Option<Vec<String>>,
    level: Level,
    part_bytes: usize,
}

/// Writes one NDJSON file in sealed parts of at most `limit` bytes (a part
/// holds at least one line; a line larger than the limit is a part alone).
struct PartWriter<'a> {
    service: &'a Service,
    tenant: &'a str,
    /// Saved with each part, so its `updated_at` shows the job is alive.
    job: &'a mut ExportJob,
    file: &'a str,
    part: i64,
    buffer: Vec<u8>,
    limit: usize,
    lines: u64,
}

impl PartWriter<'_> {
    /// Adds a line; false when the export was cancelled meanwhile.
    async fn line(&mut self, body: &[u8]) -> Result<bool, ApiError> {
        if !self.buffer.is_empty()
            && self.buffer.len() + body.len() + 1 > self.limit
            && !self.flush().await?
        {
            return Ok(false);
        }
        self.buffer.extend_from_slice(body);
        self.buffer.push(b'\n');
        self.lines += 1;
        Ok(true)
    }

    async fn flush(&mut self) -> Result<bool, ApiError> {
        if self.buffer.is_empty() {
            return Ok(true);
        }
        if !self.service.still_wanted(self.tenant, &self.job.id).await? {
            return Ok(false);
        }
        let data = std::mem::take(&mut self.buffer);
        let sealed = self.service.seal_for(
            self.tenant,
            &part_purpose(&self.job.id, self.file, self.part),
            data,
        )?;
        self.service
            .store()
            .add_export_part(ExportPart {
                tenant: self.tenant.to_owned(),
                job_id: self.job.id.clone(),
                file: self.file.to_owned(),
                part: self.part,
                data: sealed,
            })
            .await?;
        self.part += 1;
        self.job.updated_at = now_micros();
        self.service.store().save_export(self.job.clone()).await?;
        Ok(true)
    }
}
