from django.core.exceptions import RequestDataTooBig
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt

from payments import services
from ticketing.errors import ServiceError


@csrf_exempt
def stripe_webhook(request):
    """2xx once handled or deliberately ignored; 400 for a bad signature; an
    unexpected error propagates as 500 so Stripe retries."""
    if request.method != "POST":
        response = JsonResponse({"error": "method_not_allowed", "detail": "Stripe posts its events here."}, status=405)
        response["Allow"] = "POST"
        return response
    try:
        payload = request.body
    except RequestDataTooBig:
        return JsonResponse({"error": "too_large", "detail": "The request body is too large."}, status=413)
    try:
        event = services.verify_event(payload=payload, signature=request.headers.get("Stripe-Signature"))
    except ServiceError as exc:
        return JsonResponse({"error": exc.code, "detail": exc.detail}, status=exc.status)
    outcome = services.handle_event(event=event, raw=payload.decode("utf-8"))
    return JsonResponse({"received": True, "outcome": outcome})
