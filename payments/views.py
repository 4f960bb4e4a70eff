from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from payments import services
from ticketing.errors import ServiceError


@csrf_exempt
@require_POST
def stripe_webhook(request):
    """2xx once handled or deliberately ignored; 400 for a bad signature; an
    unexpected error propagates as 500 so Stripe retries."""
    try:
        event = services.verify_event(payload=request.body, signature=request.headers.get("Stripe-Signature"))
    except ServiceError as exc:
        return JsonResponse({"error": exc.code, "detail": exc.detail}, status=exc.status)
    outcome = services.handle_event(event=event, raw=request.body.decode("utf-8"))
    return JsonResponse({"received": True, "outcome": outcome})
