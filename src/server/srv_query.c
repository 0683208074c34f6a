#include "srv_http.h"
const srv_route srv_query_routes[] = {
    {NULL, NULL, 0, NULL, NULL, NULL, NULL},
};
