use axum::Json;
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "redrive",
        description = "Durable CloudEvents and webhook delivery with exact retry policies."
    ),
    paths(
        super::topics::create,
        super::topics::list,
        super::topics::get,
        super::topics::delete,
        super::subscriptions::create,
        super::subscriptions::list,
        super::subscriptions::get,
        super::subscriptions::update,
        super::subscriptions::delete,
        super::events::publish,
        super::deliveries::list,
        super::deliveries::get,
        super::deliveries::retry,
        super::lifecycle::cancel,
        super::lifecycle::redrive,
        super::lifecycle::job,
        super::lifecycle::journal,
        super::apply::apply,
    )
)]
struct ApiDoc;

pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
