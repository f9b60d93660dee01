/*
** A C program using an installed dropnet through pkg-config, built and run by
** tests/install/pkgconfig.sh:
**   cc c_api_example.c $(pkg-config --cflags --libs dropnet)
** It prints values the script compares with what they must be: a matrix
** product, a backward pass through a tiny graph, a dropout mask and an error
** message. Exit status 1 on any unexpected failure.
*/
#include <stdio.h>
#include <stdlib.h>

#include <dropnet/dropnet.h>

/* Stops the program with the runtime's message when a call fails. */
static void must(dn_status st, const char *what) {
  if (st != DN_OK) {
    fprintf(stderr, "%s failed: %s (%s)\n", what, dn_last_error(), dn_status_name(st));
    exit(1);
  }
}

static void print_values(const char *label, const dn_tensor *t) {
  int64_t index[2];
  printf("%s", label);
  for (index[0] = 0; index[0] < t->shape[0]; index[0]++)
    for (index[1] = 0; index[1] < t->shape[1]; index[1]++) {
      double v;
      must(dn_tensor_get(t, index, &v), "dn_tensor_get");
      printf(" %g", v);
    }
  printf("\n");
}

int main(void) {
  printf("version %s %d.%d.%d\n", DN_VERSION, DN_VERSION_MAJOR, DN_VERSION_MINOR, DN_VERSION_PATCH);
  must(dn_set_num_threads(2), "dn_set_num_threads");

  /* loss = sum(a @ b) with a requiring grad: d loss / d a[i][k] = sum_j b[k][j] */
  const int64_t shape[2] = {2, 2};
  const float a_values[] = {1, 2, 3, 4}, b_values[] = {5, 6, 7, 8};
  dn_tensor *a, *b, *c, *loss;
  must(dn_tensor_from_data(&a, DN_F32, 2, shape, a_values), "dn_tensor_from_data");
  must(dn_tensor_from_data(&b, DN_F32, 2, shape, b_values), "dn_tensor_from_data");
  must(dn_requires_grad_(a, true), "dn_requires_grad_");
  must(dn_matmul(&c, a, b), "dn_matmul");
  must(dn_sum_all(&loss, c), "dn_sum_all");
  print_values("matmul", c);
  double total;
  must(dn_tensor_item(loss, &total), "dn_tensor_item");
  printf("loss %g made by %s from %s\n", total, dn_grad_fn_name(loss), dn_grad_fn_name(c));
  must(dn_backward(loss, NULL, false), "dn_backward");
  print_values("grad", a->grad);

  /* inverted dropout with p = 0.5: every value is 0 or 2, and the mask the
     inspection call predicts is the one the forward draws */
  dn_rng rng;
  dn_rng_seed(&rng, 42);
  const int64_t n = 1000;
  dn_tensor *ones, *dropped, *mask;
  must(dn_tensor_ones(&ones, DN_F32, 1, &n), "dn_tensor_ones");
  must(dn_dropout_mask(&mask, &rng, 1, &n, 0.5), "dn_dropout_mask");
  must(dn_dropout(&dropped, ones, 0.5, &rng, DN_DROPOUT_INVERTED), "dn_dropout");
  int64_t kept = 0, agree = 0;
  for (int64_t i = 0; i < n; i++) {
    double v, m;
    must(dn_tensor_get(dropped, &i, &v), "dn_tensor_get");
    must(dn_tensor_get(mask, &i, &m), "dn_tensor_get");
    if (v == 2.0) kept++;
    if ((v == 2.0 && m == 1.0) || (v == 0.0 && m == 0.0)) agree++;
  }
  printf("dropout %s, mask %s\n", kept > 400 && kept < 600 ? "scaled" : "WRONG",
         agree == n ? "regenerated" : "WRONG");

  /* a bad call returns a status and a message; nothing is allocated */
  const int64_t bad_shape[2] = {3, 5};
  dn_tensor *bad, *product = (dn_tensor *)&product;
  must(dn_tensor_zeros(&bad, DN_F32, 2, bad_shape), "dn_tensor_zeros");
  dn_status st = dn_matmul(&product, a, bad);
  printf("error %s%s: %s\n", dn_status_name(st), product == NULL ? "" : " (out not cleared)", dn_last_error());

  dn_tensor_release(a);
  dn_tensor_release(b);
  dn_tensor_release(c);
  dn_tensor_release(loss);
  dn_tensor_release(ones);
  dn_tensor_release(dropped);
  dn_tensor_release(mask);
  dn_tensor_release(bad);
  dn_alloc_empty_cache();
  return 0;
}
